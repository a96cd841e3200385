"""docs/topics-and-policies.md written out on its own: what the generated policies must allow a
person's app and a device, judged topic by topic. Deliberately not shared with
`lambda_bridge.policy`: the two must agree without one copying the other."""
from devices.models import Level


def expected(action: str, name: str, levels: dict[str, int], cid: str) -> bool:
    """docs/topics-and-policies.md for a person's app: connect as the token's client id; view and
    up read `out` and the shadow, and ask for the shadow; control and up also
    send `in` commands and shadow updates. Nothing else, ever."""
    if action == "iot:Connect":
        return name == cid
    for thing, level in levels.items():
        out, shadow = f"dev/{thing}/out/", f"$aws/things/{thing}/shadow/"
        if action in ("iot:Subscribe", "iot:Receive") and (name.startswith(out) or name.startswith(shadow)):
            return True
        if action == "iot:Publish":
            if _shadow_request(name, shadow, "get"):
                return True
            if level >= Level.CONTROL and (name.startswith(f"dev/{thing}/in/")
                                           or _shadow_request(name, shadow, "update")):
                return True
    return False


def _shadow_request(topic: str, shadow: str, operation: str) -> bool:
    """The classic shadow's `…/shadow/get`, or a named shadow's `…/shadow/name/{name}/get`."""
    if topic == shadow + operation:
        return True
    named = shadow + "name/"
    return topic.startswith(named) and topic.endswith("/" + operation) and len(topic) > len(named) + len(operation)


def expected_of_device(action: str, name: str, thing: str) -> bool:
    """A device connects as its thing name; it publishes (and retains) its
    `out` telemetry, receives its `in` commands, and owns its shadow."""
    out, inbound, shadow = f"dev/{thing}/out/", f"dev/{thing}/in/", f"$aws/things/{thing}/shadow/"
    if action == "iot:Connect":
        return name == thing
    if action == "iot:Publish":
        return name.startswith(out) or name.startswith(shadow)
    if action == "iot:RetainPublish":
        return name.startswith(out)
    if action in ("iot:Subscribe", "iot:Receive"):
        return name.startswith(inbound) or name.startswith(shadow)
    return False


def probes(things: list[str]) -> list[str]:
    """Topics and filters to judge every action on: each thing's own, its
    neighbours' and names a loose wildcard would swallow."""
    found = ["#", "+", "dev/#", "dev/+/out/#", "+/+/out/#", "dev/*/out/x", "$aws/things/+/shadow/get"]
    for t in things:
        shadow = f"$aws/things/{t}/shadow"
        found += [
            t, f"dev/{t}", f"dev/{t}/out", f"dev/{t}/out/", f"dev/{t}/out/temp", f"dev/{t}/out/#",
            f"dev/{t}/out/+/x", f"dev/{t}/in/power", f"dev/{t}/in/#", f"dev/{t}/inbox", f"dev/{t}x/out/a",
            f"dev/{t}:x/out/a", f"a:topic/dev/{t}/out/z", f"dev/{t}/out/../in/x", f"x/dev/{t}/out/y",
            f"{shadow}/get", f"{shadow}/update", f"{shadow}/delete", f"{shadow}/update/accepted",
            f"{shadow}/update/delta", f"{shadow}/#", f"{shadow}/name/s1/get", f"{shadow}/name/s1/update",
            f"{shadow}/name/s1/delete", f"{shadow}/name/a/b/get", f"{shadow}get", f"$aws/things/{t}x/shadow/get",
        ]
    return found
