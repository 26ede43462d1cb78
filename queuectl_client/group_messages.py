"""The protocol's messages for groups: add, set, remove, list, pause and resume, and what `list` says.

`protocol` re-exports them and lists them among its requests and replies.
"""

from __future__ import annotations

from .schema import GroupInfo, GroupName, Message, Parallel


class GroupAdd(Message, frozen=True):
    name: GroupName
    parallel: Parallel = 0


class GroupSet(Message, frozen=True):
    name: str
    parallel: Parallel


class GroupRemove(Message, frozen=True):
    """Refused while the group holds a job that is not completed or dead, and for `default`."""

    name: str


class GroupList(Message, frozen=True):
    pass


class Pause(Message, frozen=True):
    """Pause (or with `resume`, resume) the named groups; every group if none is named."""

    groups: list[str] = []
    resume: bool = False


class GroupsReply(Message, frozen=True):
    groups: list[GroupInfo]
