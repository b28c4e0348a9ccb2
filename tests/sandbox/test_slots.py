"""The slot pool on its own: locks shared with other processes, waiting, waking."""

from __future__ import annotations

import asyncio

import pytest

from stockade.sandbox.slots import SlotPool


def pool(tmp_path, count=1) -> SlotPool:
    return SlotPool(str(tmp_path), count, 60000, switch_user=False)


def test_a_freed_slot_goes_to_the_first_in_line_not_to_a_newcomer(tmp_path):
    slots = pool(tmp_path)

    async def main():
        held = slots.try_acquire()
        assert held is not None and slots.try_acquire() is None
        order = []

        async def wait_in_line(name):
            slot = await slots.acquire()
            order.append(name)
            await asyncio.sleep(0.01)
            slots.release(slot)

        waiting = [asyncio.ensure_future(wait_in_line(name)) for name in "abc"]
        await asyncio.sleep(0)
        assert slots.awaited
        slots.release(held)
        # Handed to "a", not yet run: a newcomer (a warm-box build, a new run) gets nothing.
        assert slots.try_acquire() is None
        await asyncio.gather(*waiting)
        assert order == ["a", "b", "c"] and not slots.awaited
        slots.release(slots.try_acquire())  # free again for anyone

    asyncio.run(main())
    slots.close()


def test_a_caller_leaving_the_line_passes_its_slot_on(tmp_path):
    slots = pool(tmp_path)

    async def main():
        held = slots.try_acquire()
        leaving = asyncio.ensure_future(slots.acquire())
        staying = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release(held)  # handed to `leaving`...
        leaving.cancel()  # ...which is cancelled before it runs
        got = await asyncio.wait_for(staying, 5)
        assert got.index == held.index and leaving.cancelled()
        slots.release(got)

    asyncio.run(main())
    slots.close()


def test_holding_is_refused_while_another_descriptor_holds_the_slot(tmp_path):
    slots, other = pool(tmp_path), pool(tmp_path)
    slot = slots.try_acquire()
    with other.holding(slot.uid, slot.index) as held:
        assert held is False
    slots.release(slot)
    with other.holding(slot.uid, slot.index) as held:
        assert held is True
        assert slots.try_acquire() is None  # held by `other` for the block
    assert slots.try_acquire() is not None
    slots.close()
    other.close()


def test_a_long_wait_for_slots_other_processes_hold_is_explained(tmp_path, monkeypatch, caplog):
    from stockade.sandbox import slots as module

    monkeypatch.setattr(module, "WAIT_WARNING", 0.1)
    slots, other = pool(tmp_path, 2), pool(tmp_path, 2)
    taken = [other.try_acquire(), other.try_acquire()]  # another process's, for good

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slots.acquire(), 0.5)

    asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.name == "stockade.sandbox"]
    assert warnings == ["waiting for a slot: 2 of 2 are held by other processes (a service keeps some for its warm"
                        " boxes); give this Sandbox more slots, or other uids (first_uid)"]
    for slot in taken:
        other.release(slot)
    slots.close()
    other.close()
