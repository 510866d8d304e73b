"""Readers for the coordinator's deployment files, strict enough to catch what the real
tools would refuse: a Dockerfile (instructions, continuations, JSON exec form), an
Apptainer definition file (header and ``%sections``) and a systemd unit (``Key=value``
per section, repeated keys kept in order)."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex

# https://docs.docker.com/reference/dockerfile/ (the instruction overview table).
DOCKERFILE_INSTRUCTIONS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
        "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
        "WORKDIR",
    }
)  # fmt: skip
# https://apptainer.org/docs/user/latest/definition_files.html: the sections of a
# definition file (app sections, ``%app*``, are not used here and so not accepted).
APPTAINER_SECTIONS = frozenset(
    {
        "setup", "files", "environment", "post", "runscript", "startscript", "test",
        "labels", "help", "arguments",
    }
)  # fmt: skip
APPTAINER_HEADER_KEYS = frozenset({"bootstrap", "from", "stage", "includecmd", "mirrorurl"})


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of ``CMD ["a", "b"]`` (or of a HEALTHCHECK's ``CMD``)."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD ") + 4 :]
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"line {self.line}: not a JSON array of strings: {text}")
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; unknown ones raise ValueError."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction are dropped, as Docker does
        start = start or number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        if keyword.upper() not in DOCKERFILE_INSTRUCTIONS:
            raise ValueError(f"line {start}: unknown instruction {keyword!r}")
        instructions.append(Instruction(keyword.upper(), " ".join(arguments.split()), start))
        pending, start = "", 0
    if pending:
        raise ValueError("the file ends inside a continued instruction")
    return instructions


def dockerfile_env(instruction: Instruction) -> dict[str, str]:
    """``ENV A=1 B=2`` (the ``key=value`` form) -> mapping."""
    pairs = (item.split("=", 1) for item in shlex.split(instruction.arguments))
    return {key: value for key, value in pairs}


def parse_definition(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(header keys lower-cased -> value, section name -> body) of an Apptainer .def."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        match = re.match(r"^%(\w+)\s*$", raw)
        if match:
            current = match.group(1).lower()
            if current not in APPTAINER_SECTIONS or current in sections:
                raise ValueError(f"line {number}: unknown or repeated section %{current}")
            sections[current] = []
        elif current is not None:
            sections[current].append(raw)
        elif raw.strip() and not raw.lstrip().startswith("#"):
            key, sep, value = raw.partition(":")
            if not sep or key.strip().lower() not in APPTAINER_HEADER_KEYS:
                raise ValueError(f"line {number}: not a header keyword: {raw!r}")
            header[key.strip().lower()] = value.strip()
    return header, {name: "\n".join(lines).strip() for name, lines in sections.items()}


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit: section -> [(key, value)] in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, sep, value = line.partition("=")
        if current is None or not sep:
            raise ValueError(f"line {number}: not Key=value inside a section: {raw!r}")
        sections[current].append((key.strip(), value.strip()))
    return sections


def parse_environment_file(text: str) -> dict[str, str]:
    """systemd's EnvironmentFile: ``KEY=value`` lines, ``#`` comments."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env
