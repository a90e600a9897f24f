"""Source map v3 lookups (base64 VLQ mappings), to report page errors at the component's own lines.

Small on purpose: esbuild's maps are all this needs to read (no index maps, no names), and the one
package on PyPI for it (`sourcemap` 0.2.1) is unmaintained.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def decode_vlq(segment: str) -> list[int]:
    """The signed integers one mappings segment encodes."""
    values: list[int] = []
    value = shift = 0
    for char in segment:
        digit = _B64[char]
        value += (digit & 31) << shift
        if digit & 32:
            shift += 5
            continue
        values.append(-(value >> 1) if value & 1 else value >> 1)
        value = shift = 0
    return values


@dataclass(frozen=True)
class Original:
    source: str
    line: int  # 1-based
    column: int  # 1-based


class SourceMap:
    """Generated (line, column) -> original position, for one generated file."""

    def __init__(self, text: str) -> None:
        data = json.loads(text)
        self.sources: list[str] = list(data.get("sources") or [])
        self._lines: list[tuple[list[int], list[tuple[int, int, int]]]] = []
        source = src_line = src_col = 0
        for line in (data.get("mappings") or "").split(";"):
            columns: list[int] = []
            targets: list[tuple[int, int, int]] = []
            gen_col = 0
            for segment in line.split(","):
                if not segment:
                    continue
                fields = decode_vlq(segment)
                gen_col += fields[0]
                if len(fields) >= 4:
                    source += fields[1]
                    src_line += fields[2]
                    src_col += fields[3]
                    columns.append(gen_col)
                    targets.append((source, src_line, src_col))
            self._lines.append((columns, targets))

    def lookup(self, line: int, column: int) -> Original | None:
        """The original position of generated 1-based (line, column): the closest mapping at or before it."""
        if not 1 <= line <= len(self._lines):
            return None
        columns, targets = self._lines[line - 1]
        index = bisect.bisect_right(columns, column - 1) - 1
        if index < 0:
            return None
        source, src_line, src_col = targets[index]
        if not 0 <= source < len(self.sources):
            return None
        return Original(self.sources[source], src_line + 1, src_col + 1)


_FRAME = re.compile(r"(?P<url>https?://[^\s()]+?):(?P<line>\d+):(?P<column>\d+)")


class StackMapper:
    """Rewrites `url:line:column` references to a bundle into original sources (the component's name)."""

    def __init__(self, maps: dict[str, SourceMap], rename: dict[str, str] | None = None) -> None:
        self.maps = maps
        self.rename = rename or {}

    def position(self, url: str, line: int, column: int) -> tuple[str, int, int]:
        """(file, line, column) mapped through `url`'s source map when it has one, else as given."""
        source_map = self.maps.get(url)
        if source_map is not None:
            original = source_map.lookup(line, column)
            if original is not None:
                return self.rename.get(original.source, original.source), original.line, original.column
        return self.rename.get(url, url), line, column

    def stack(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            file, line, column = self.position(match["url"], int(match["line"]), int(match["column"]))
            return f"{file}:{line}:{column}"

        return _FRAME.sub(replace, text)

    def first_frame(self, text: str, prefer: str | None = None) -> tuple[str, int, int] | None:
        """The first frame of a stack, or the first one in `prefer` (the component file) when there is one."""
        frames = [self.position(m["url"], int(m["line"]), int(m["column"])) for m in _FRAME.finditer(text)]
        if prefer is not None:
            for frame in frames:
                if frame[0] == prefer:
                    return frame
        return frames[0] if frames else None
