"""Generate the example agents' SQLite memory files: agents/<agent-id>/memory.db (deterministic for a seed).

Each file has the two tables real agent files have:

    memories(id INTEGER PRIMARY KEY, kind TEXT, content TEXT, embedding BLOB, metadata TEXT (JSON), created_at)
    conversations(id INTEGER PRIMARY KEY, session_id TEXT, role TEXT, message TEXT, tokens INTEGER, created_at)

``created_at`` mixes ISO 8601 text and Unix epoch numbers (integer and real) the way real agent files do.
The files are gitignored; `ws migrate` on the example and the tests generate them first:

    python examples/app-agents/scripts/generate_memories.py            # 6 agents into examples/app-agents/agents
    python examples/app-agents/scripts/generate_memories.py --agents 200 --memories 3000 --conversations 2000 \
        --root /tmp/bench-agents                                        # a benchmark corpus
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

APP_AGENTS = Path(__file__).resolve().parents[1]
SCHEMA = """
CREATE TABLE memories (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    embedding BLOB,
    metadata TEXT,
    created_at
);
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    role TEXT NOT NULL,
    message TEXT NOT NULL,
    tokens INTEGER,
    created_at
);
CREATE INDEX conversations_session ON conversations(session_id);
"""
KINDS = ("fact", "preference", "episode", "skill", "goal")
ROLES = ("user", "assistant", "system", "tool")
WORDS = (
    "agent memory context retrieval embedding vector planner tool call result user asked answered summary "
    "deadline invoice customer ticket résumé naïve café 日本語 データ 🤖 ✓ quarterly report schema deploy"
).split()
START = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def agent_ids(count: int, seed: int) -> list[str]:
    rng = random.Random(f"agents-{seed}")
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _created_at(rng: random.Random, index: int) -> str | int | float:
    moment = START + dt.timedelta(seconds=index * 37 + rng.randrange(0, 30), microseconds=rng.randrange(0, 10**6))
    style = index % 5
    if style == 0:
        return int(moment.timestamp())
    if style == 1:
        return round(moment.timestamp(), 3)
    if style == 2:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if style == 3:
        return moment.isoformat().replace("+00:00", "Z")
    return moment.isoformat()


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def memories(rng: random.Random, count: int) -> Iterator[tuple[object, ...]]:
    for index in range(1, count + 1):
        embedding = None if index % 7 == 0 else struct.pack("<32f", *(rng.uniform(-1, 1) for _ in range(32)))
        metadata = json.dumps(
            {
                "source": rng.choice(("chat", "tool", "import", "reflection")),
                "tags": rng.sample(KINDS, 2),
                "score": round(rng.random(), 4),
                "turn": index,
            },
            ensure_ascii=False,
        )
        yield (
            index,
            KINDS[index % len(KINDS)],
            _sentence(rng, 6, 30),
            embedding,
            metadata if index % 11 else None,
            _created_at(rng, index),
        )


def conversations(rng: random.Random, count: int) -> Iterator[tuple[object, ...]]:
    for index in range(1, count + 1):
        yield (
            index,
            f"session-{index // 20:04d}",
            ROLES[index % len(ROLES)],
            _sentence(rng, 3, 40),
            rng.randint(5, 900) if index % 9 else None,
            _created_at(rng, index),
        )


def write_agent(path: Path, agent: str, memory_rows: int, conversation_rows: int, seed: int) -> None:
    """Write one agent's file atomically (a temporary file renamed into place)."""
    rng = random.Random(f"{seed}-{agent}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    conn = sqlite3.connect(temporary)
    try:
        conn.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
        conn.executemany("INSERT INTO memories VALUES (?, ?, ?, ?, ?, ?)", memories(rng, memory_rows))
        conn.executemany("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)", conversations(rng, conversation_rows))
        conn.commit()
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
    os.replace(temporary, path)


def generate(
    root: Path = APP_AGENTS, agents: int = 6, memory_rows: int = 120, conversation_rows: int = 200, seed: int = 1
) -> list[Path]:
    """Write ``agents`` files under root/agents/<id>/memory.db; returns their paths."""
    paths = []
    for agent in agent_ids(agents, seed):
        path = root / "agents" / agent / "memory.db"
        write_agent(path, agent, memory_rows, conversation_rows, seed)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=APP_AGENTS, help="folder that receives agents/ (app-agents)")
    parser.add_argument("--agents", type=int, default=6, help="number of agents (files)")
    parser.add_argument("--memories", type=int, default=120, help="memories rows per agent")
    parser.add_argument("--conversations", type=int, default=200, help="conversations rows per agent")
    parser.add_argument("--seed", type=int, default=1, help="seed: the same seed gives the same data")
    args = parser.parse_args()
    paths = generate(args.root, args.agents, args.memories, args.conversations, args.seed)
    rows = len(paths) * (args.memories + args.conversations)
    print(f"wrote {len(paths)} agent memory files ({rows:,} rows) under {args.root / 'agents'}")


if __name__ == "__main__":
    main()
