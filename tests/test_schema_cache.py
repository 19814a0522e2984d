"""The full-state cache: a cached structure block must never be stale. Random mutation
sequences with ticks, joins and full states compare every cached full state with a fresh
encode of the same state."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schema_property import OPS, State, apply

from greenroom.schema import ChangeTracker, encode_all, encode_patch
from greenroom.schema.changes import child_nodes


def all_nodes(root):
    out, stack, seen = [], [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        stack.extend(child for child, _ in child_nodes(node))
    return out


def fresh(tracker, order):
    """Encode with every cached block set aside, then put them back."""
    saved = [(node, node.full) for node in all_nodes(tracker.state._gr)]
    for node, _ in saved:
        node.full = None
    body = encode_all(tracker, order)
    for node, block in saved:
        node.full = block
    return body


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(OPS, st.just(("full",)), st.just(("full3",))), max_size=40))
def test_cached_full_states_equal_fresh_encodes(ops):
    state = State()
    tracker = ChangeTracker(state)
    for op in ops:
        if op[0] in ("full", "full3"):
            order = "v3" if op[0] == "full3" else "v5"
            want = fresh(tracker, order)
            assert encode_all(tracker, order) == want, op
            assert encode_all(tracker, order) == want  # now from the cache
        elif op[0] == "tick":
            encode_patch(tracker)
        elif op[0] == "join":
            encode_patch(tracker)
            tracker.discard_changes()
        else:
            apply(state, op)
    for order in ("v5", "v3"):
        assert encode_all(tracker, order) == fresh(tracker, order)
