"""The msgpack subset the protocol uses, in plain Python, for the CLI's quick path.

msgspec is the protocol's codec everywhere else; importing it (with typing,
datetime, decimal and uuid behind it) costs a CLI call more than the call's
own work, so `queuectl status` and a one-job `enqueue` encode their request
and decode their reply with this instead.  It handles nil, bool, int, float,
str, bin, array and map, exactly as msgspec writes them; anything else raises
ValueError, and the caller takes the full path.
"""

from __future__ import annotations

from struct import pack as _pack
from struct import unpack_from as _unpack_from

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def packb(obj: Any) -> bytes:
    out: list[bytes] = []
    _pack_into(obj, out)
    return b"".join(out)


def _pack_into(obj: Any, out: list[bytes]) -> None:
    if obj is None:
        out.append(b"\xc0")
    elif obj is True:
        out.append(b"\xc3")
    elif obj is False:
        out.append(b"\xc2")
    elif isinstance(obj, int):
        out.append(_int(obj))
    elif isinstance(obj, float):
        out.append(b"\xcb" + _pack(">d", obj))
    elif isinstance(obj, str):
        data = obj.encode()
        n = len(data)
        if n < 32:
            out.append(bytes((0xA0 | n,)) + data)
        elif n < 0x100:
            out.append(b"\xd9" + bytes((n,)) + data)
        elif n < 0x10000:
            out.append(b"\xda" + _pack(">H", n) + data)
        else:
            out.append(b"\xdb" + _pack(">I", n) + data)
    elif isinstance(obj, bytes):
        n = len(obj)
        out.append((b"\xc4" + bytes((n,)) if n < 0x100 else b"\xc6" + _pack(">I", n)) + obj)
    elif isinstance(obj, (list, tuple)):
        out.append(_header(len(obj), 0x90, b"\xdc", b"\xdd"))
        for item in obj:
            _pack_into(item, out)
    elif isinstance(obj, dict):
        out.append(_header(len(obj), 0x80, b"\xde", b"\xdf"))
        for key, value in obj.items():
            _pack_into(key, out)
            _pack_into(value, out)
    else:
        raise ValueError(f"cannot encode {type(obj).__name__}")


def _int(n: int) -> bytes:
    if 0 <= n < 0x80:
        return bytes((n,))
    if -32 <= n < 0:
        return bytes((n & 0xFF,))
    if n >= 0:
        for code, fmt, top in ((b"\xcc", ">B", 0x100), (b"\xcd", ">H", 0x10000), (b"\xce", ">I", 1 << 32),
                               (b"\xcf", ">Q", 1 << 64)):
            if n < top:
                return code + _pack(fmt, n)
    else:
        for code, fmt, low in ((b"\xd0", ">b", -0x80), (b"\xd1", ">h", -0x8000), (b"\xd2", ">i", -(1 << 31)),
                               (b"\xd3", ">q", -(1 << 63))):
            if n >= low:
                return code + _pack(fmt, n)
    raise ValueError("integer out of range")


def _header(n: int, fix: int, code16: bytes, code32: bytes) -> bytes:
    if n < 16:
        return bytes((fix | n,))
    return code16 + _pack(">H", n) if n < 0x10000 else code32 + _pack(">I", n)


def unpackb(data: bytes) -> Any:
    obj, end = _unpack(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after the message")
    return obj


# first byte -> (struct format, size) for fixed-size scalars
_SCALARS = {
    0xCA: (">f", 4), 0xCB: (">d", 8),
    0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
    0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
}
# first byte -> (length format, length size, kind)
_SIZED = {
    0xC4: (">B", 1, "bin"), 0xC5: (">H", 2, "bin"), 0xC6: (">I", 4, "bin"),
    0xD9: (">B", 1, "str"), 0xDA: (">H", 2, "str"), 0xDB: (">I", 4, "str"),
    0xDC: (">H", 2, "array"), 0xDD: (">I", 4, "array"),
    0xDE: (">H", 2, "map"), 0xDF: (">I", 4, "map"),
}


def _unpack(data: bytes, i: int) -> tuple[Any, int]:
    try:
        b = data[i]
    except IndexError:
        raise ValueError("truncated message") from None
    i += 1
    if b < 0x80:
        return b, i
    if b >= 0xE0:
        return b - 0x100, i
    if b <= 0x8F:
        return _container(data, i, b & 0x0F, "map")
    if b <= 0x9F:
        return _container(data, i, b & 0x0F, "array")
    if b <= 0xBF:
        return _sized(data, i, b & 0x1F, "str")
    if b == 0xC0:
        return None, i
    if b == 0xC2:
        return False, i
    if b == 0xC3:
        return True, i
    if b in _SCALARS:
        fmt, size = _SCALARS[b]
        _need(data, i, size)
        return _unpack_from(fmt, data, i)[0], i + size
    if b in _SIZED:
        fmt, size, kind = _SIZED[b]
        _need(data, i, size)
        n = _unpack_from(fmt, data, i)[0]
        i += size
        if kind in ("str", "bin"):
            return _sized(data, i, n, kind)
        return _container(data, i, n, kind)
    raise ValueError(f"unsupported msgpack type 0x{b:02x}")


def _need(data: bytes, i: int, n: int) -> None:
    if i + n > len(data):
        raise ValueError("truncated message")


def _sized(data: bytes, i: int, n: int, kind: str) -> tuple[Any, int]:
    _need(data, i, n)
    raw = data[i : i + n]
    return (raw.decode() if kind == "str" else raw), i + n


def _container(data: bytes, i: int, n: int, kind: str) -> tuple[Any, int]:
    if kind == "array":
        items = []
        for _ in range(n):
            item, i = _unpack(data, i)
            items.append(item)
        return items, i
    result = {}
    for _ in range(n):
        key, i = _unpack(data, i)
        value, i = _unpack(data, i)
        result[key] = value
    return result, i
