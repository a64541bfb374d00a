"""The dependency graph of repos: deterministic topological stages, cycles, selections and renderings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from infra.workspace.model import Workspace

Edges = Mapping[str, Sequence[str]]  # repo -> repos it depends on


def edges_of(workspace: Workspace) -> dict[str, list[str]]:
    return {name: list(repo.depends_on) for name, repo in workspace.repos.items()}


def find_cycle(edges: Edges) -> list[str] | None:
    """A dependency cycle as a path that starts and ends on the same repo, or None.

    Depth-first in sorted order, with an explicit stack: a chain of thousands of repos must not recurse.
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(edges):
        if root in state:
            continue
        state[root] = 1
        path = [root]
        pending = [iter(sorted(edges.get(root, ())))]
        while pending:
            for dep in pending[-1]:
                if dep not in edges:
                    continue
                if state.get(dep) == 1:
                    return path[path.index(dep) :] + [dep]
                if dep not in state:
                    state[dep] = 1
                    path.append(dep)
                    pending.append(iter(sorted(edges.get(dep, ()))))
                    break
            else:
                state[path.pop()] = 2
                pending.pop()
    return None


def stages(edges: Edges) -> list[list[str]]:
    """Topological layers: stage k holds the repos whose dependencies all sit in earlier stages.

    Repos inside a stage are sorted by name, so the result is the same on every run. Raises ValueError
    on a cycle (the loader reports cycles first, with their path). Linear in repos and edges (Kahn).
    """
    waiting = {node: len(set(deps) & edges.keys()) for node, deps in edges.items()}
    dependents: dict[str, list[str]] = {node: [] for node in edges}
    for node, deps in edges.items():
        for dep in set(deps) & edges.keys():
            dependents[dep].append(node)
    layers: list[list[str]] = []
    ready = sorted(node for node, count in waiting.items() if count == 0)
    while ready:
        layers.append(ready)
        following = []
        for node in ready:
            for dependent in dependents[node]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    following.append(dependent)
        ready = sorted(following)
    if sum(len(layer) for layer in layers) != len(edges):
        raise ValueError(f"dependency cycle: {' -> '.join(find_cycle(edges) or [])}")
    return layers


def closure(edges: Edges, selected: Iterable[str]) -> set[str]:
    """The selected repos plus everything they depend on, transitively."""
    result: set[str] = set()
    todo = list(selected)
    while todo:
        node = todo.pop()
        if node not in result:
            result.add(node)
            todo.extend(edges.get(node, ()))
    return result


def dependents(edges: Edges, repo: str) -> set[str]:
    """Every repo that depends on ``repo``, transitively."""
    reverse: dict[str, list[str]] = {n: [] for n in edges}
    for node, deps in edges.items():
        for dep in deps:
            reverse.setdefault(dep, []).append(node)
    return closure(reverse, reverse.get(repo, [])) if reverse.get(repo) else set()


def selected_stages(workspace: Workspace, repos: Sequence[str] | None = None) -> list[list[str]]:
    """Stages restricted to ``repos`` (all when None); order and layering stay those of the whole graph."""
    layers = stages(edges_of(workspace))
    if not repos:
        return layers
    wanted = set(repos)
    return [kept for layer in layers if (kept := [r for r in layer if r in wanted])]


def mermaid(workspace: Workspace, repos: Sequence[str] | None = None) -> str:
    """A Mermaid flowchart: one subgraph per stage, an arrow from each dependency to its dependent."""
    lines = ["flowchart LR"]
    layers = selected_stages(workspace, repos)
    shown = {r for layer in layers for r in layer}
    for index, layer in enumerate(layers, start=1):
        lines.append(f'  subgraph stage{index}["stage {index}"]')
        for repo in layer:
            role = workspace.repos[repo].role
            lines.append(f'    {_node_id(repo)}["{repo}<br/><small>{role}</small>"]')
        lines.append("  end")
    for repo in sorted(shown):
        for dep in workspace.repos[repo].depends_on:
            if dep in shown:
                lines.append(f"  {_node_id(dep)} --> {_node_id(repo)}")
    return "\n".join(lines) + "\n"


def dot(workspace: Workspace, repos: Sequence[str] | None = None) -> str:
    """A Graphviz digraph with one rank per stage."""
    lines = [f'digraph "{workspace.name}" {{', "  rankdir=LR;", "  node [shape=box];"]
    layers = selected_stages(workspace, repos)
    shown = {r for layer in layers for r in layer}
    for index, layer in enumerate(layers, start=1):
        members = " ".join(f'"{r}";' for r in layer)
        lines.append(f'  subgraph "cluster_stage{index}" {{ label="stage {index}"; {members} }}')
    for repo in sorted(shown):
        for dep in workspace.repos[repo].depends_on:
            if dep in shown:
                lines.append(f'  "{dep}" -> "{repo}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_id(repo: str) -> str:
    return repo.replace("-", "_")
