"""The statecharts the crash-resume tests serve from real worker processes."""

from __future__ import annotations

from tripwright.flows.statechart import (
    Assign,
    Statechart,
    StatechartFlow,
    after,
    final,
    on,
    state,
    statechart,
)

__all__ = ["REMIND_AFTER", "batched", "charts", "reminder", "reminder_batched"]

#: Seconds (real time) after which a waiting machine reminds itself.
REMIND_AFTER = 6.0


def _reminder(name: str) -> Statechart:
    return statechart(
        name,
        state("waiting", on("go", "working"), after(REMIND_AFTER, "reminded")),
        state("reminded", on("go", "working"), on_entry=Assign("reminded", expr="True")),
        state(
            "working",
            on("tick", actions=Assign("ticks", expr="ticks + 1")),
            on("done", "finished", cond="ticks == 3"),
        ),
        final("finished", donedata={"ticks": "ticks", "reminded": "reminded"}),
        data={"ticks": 0, "reminded": False},
    )


reminder = _reminder("reminder")
#: The same machine, taking up to 4 queued events per checkpoint.
reminder_batched = _reminder("reminder-batched")

charts = [reminder]
batched = [StatechartFlow(reminder_batched, macrosteps_per_checkpoint=4)]
