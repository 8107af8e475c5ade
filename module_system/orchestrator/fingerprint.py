"""What a machine must have installed to run our jobs the way the client would: the same
version of this package and the same source and validator plugins (entry points).

A worker with another version or a missing plugin would fail jobs one by one, or worse,
judge files differently; the Dask executor compares fingerprints before a batch starts.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from module_system._version import __version__

PLUGIN_GROUPS = {"module_system.sources": "source", "module_system.validators": "validator"}

# {"module_system": version, "<group>:<name>": "<distribution> <version>" or the target}
Fingerprint = dict[str, str]


def installed() -> Fingerprint:
    """This process's fingerprint."""
    found: Fingerprint = {"module_system": __version__}
    for group in PLUGIN_GROUPS:
        for ep in entry_points(group=group):
            found[f"{group}:{ep.name}"] = _provider(ep)
    return found


def _provider(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def differences(client: Fingerprint, here: Fingerprint) -> list[str]:
    """What differs between the client's fingerprint and this machine's, as sentences."""
    problems = []
    if client.get("module_system") != here.get("module_system"):
        problems.append(
            f"module_system {here.get('module_system')} is installed here, the client has "
            f"{client.get('module_system')}"
        )
    for key in sorted((set(client) | set(here)) - {"module_system"}):
        group, _, name = key.partition(":")
        what = f"{PLUGIN_GROUPS.get(group, group)} plugin '{name}'"
        if key not in here:
            problems.append(f"{what} ({client[key]}) is installed on the client but not here")
        elif key not in client:
            problems.append(f"{what} ({here[key]}) is installed here but not on the client")
        elif client[key] != here[key]:
            problems.append(f"{what} is {here[key]} here, {client[key]} on the client")
    return problems
