"""``{name}`` placeholders in a mapping's topics and twin ids: the regexes that match them.

One MQTT asset may serve every device publishing under a topic template (``plant/{line}/{machine}``,
one topic level per placeholder); its twin id is built from the same placeholders (``{line}-{machine}``).

>>> twin_pattern("{line}-{machine}").fullmatch("l1-press").groupdict()
{'line': 'l1', 'machine': 'press'}
>>> topic_regex("plant/{line}/{machine}").match("plant/l1/press").groupdict()
{'line': 'l1', 'machine': 'press'}
>>> subscription_of("plant/{line}/{machine}")
'plant/+/+'
"""

from __future__ import annotations

import re

TOPIC_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _with_groups(template: str, value: str) -> str:
    """``template`` as a regex: its text literal, each placeholder a named group matching ``value``."""
    out, pos = [], 0
    for m in TOPIC_PLACEHOLDER.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{value})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return "".join(out)


def twin_pattern(template: str) -> re.Pattern[str]:
    """A regex matching (with ``fullmatch``) the twin ids an asset template builds, one group per placeholder."""
    return re.compile(_with_groups(template, "[^/+#]+?"))


def topic_regex(template: str) -> re.Pattern[str]:
    """``plant/{line}/{machine}`` → a regex of the concrete topics, one group per placeholder (one level each)."""
    return re.compile("^" + _with_groups(template, "[^/]+") + "$")


def subscription_of(template: str) -> str:
    """The MQTT subscription of a topic template: each placeholder a ``+`` wildcard."""
    return TOPIC_PLACEHOLDER.sub("+", template)
