"""examples/monitoring parses, and asks only for metrics that `queuectl metrics` prints: the Grafana
dashboard (JSON, data source templated), the alerting rules and the scrape config (promtool when
installed, else a small check), the textfile timer and service (systemd-analyze when installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from queuectl_client import protocol as p
from queuectl_client.prometheus import render

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "examples", "monitoring")
OTHERS = {"node_textfile_mtime_seconds"}  # node_exporter's own, for the textfile alternative


def _read(name: str) -> str:
    with open(os.path.join(HERE, name)) as f:
        return f.read()


def _printed() -> set[str]:
    h = p.Histogram([1.0], [0], 0, 0.0)
    reply = p.MetricsReply("0", 0.0, 1, 0, 0, h, [p.GroupMetrics("default", {}, {}, h, h, None)], "3.11", 0.0)
    return {line.split("{")[0].split()[0] for line in render(reply).splitlines() if not line.startswith("#")}


def _asked(expr: str) -> set[str]:
    return set(re.findall(r"\b(?:queuectl_\w+|process_\w+|node_\w+)", expr))


def test_the_grafana_dashboard_is_json_on_a_templated_data_source_and_asks_for_printed_metrics() -> None:
    dash = json.loads(_read("grafana-dashboard.json"))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    printed = _printed()
    assert dash["panels"]
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            asked = _asked(target["expr"])
            assert asked and asked <= printed, (panel["title"], asked - printed)
    ids = [panel["id"] for panel in dash["panels"]]
    assert len(set(ids)) == len(ids)


def test_the_alerting_rules_ask_for_printed_metrics_and_pass_promtool() -> None:
    text = _read("alerts.yml")
    assert "\t" not in text and "queuectl_oldest_pending_age_seconds" in text
    exprs = re.findall(r"expr: (?:>\n\s+)?(.+)", text)
    assert len(exprs) == text.count("- alert:") >= 2
    for expr in exprs:
        assert _asked(expr) and _asked(expr) <= _printed() | OTHERS, expr
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian package prometheus) is not installed: the small check only")
    proc = subprocess.run(["promtool", "check", "rules", os.path.join(HERE, "alerts.yml")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_scrape_config_sends_the_dashboard_token_and_passes_promtool(tmp_path: os.PathLike[str]) -> None:
    text = _read("prometheus.yml")
    assert "metrics_path: /metrics" in text and "credentials_file:" in text and "\t" not in text
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian package prometheus) is not installed: the small check only")
    token = os.path.join(str(tmp_path), "token")
    with open(token, "w") as f:
        f.write("secret\n")
    shutil.copy(os.path.join(HERE, "alerts.yml"), str(tmp_path))
    config = os.path.join(str(tmp_path), "prometheus.yml")
    with open(config, "w") as f:
        f.write(re.sub(r"credentials_file: \S+", f"credentials_file: {token}", text))
    proc = subprocess.run(["promtool", "check", "config", config], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_textfile_units_write_beside_the_file_and_rename_it(tmp_path: os.PathLike[str]) -> None:
    service = _read("queuectl-metrics.service")
    assert re.search(r'queuectl metrics > "(\$\$TEXTFILE_DIR/queuectl\.prom)\.tmp" && mv "\1\.tmp" "\1"', service)
    assert "QUEUECTL_NO_AUTOSTART=1" in service and "OnUnitActiveSec=" in _read("queuectl-metrics.timer")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    for unit in ("queuectl-metrics.service", "queuectl-metrics.timer"):
        with open(os.path.join(str(tmp_path), unit), "w") as f:
            f.write(_read(unit).replace("%h/.local/bin/queuectl", shutil.which("sh") or "/bin/sh"))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no",
                           *(os.path.join(str(tmp_path), u) for u in ("queuectl-metrics.service",
                                                                       "queuectl-metrics.timer"))],
                          capture_output=True, text=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    assert proc.returncode == 0 and "queuectl" not in proc.stderr, proc.stderr
