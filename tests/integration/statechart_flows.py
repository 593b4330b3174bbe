"""The statechart the crash-resume tests serve from real worker processes."""

from __future__ import annotations

from tripwright.flows.statechart import Assign, after, final, on, state, statechart

__all__ = ["REMIND_AFTER", "charts", "reminder"]

#: Seconds (real time) after which a waiting machine reminds itself.
REMIND_AFTER = 6.0

reminder = statechart(
    "reminder",
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

charts = [reminder]
