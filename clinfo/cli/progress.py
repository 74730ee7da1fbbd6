"""Progress of one question on stderr: a spinner with the current stage, a line per finished stage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clinfo.pipeline.events import Event


class StageProgress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._status: Any = None
        self._console: Any = None

    def __enter__(self) -> StageProgress:
        if self.enabled:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
            self._status = self._console.status("planning PubMed queries…")
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def on_event(self, event: Event) -> None:
        if not self.enabled or self._console is None:
            return
        if event.stage == "screen" and "done" in event.data:
            if self._status is not None:
                self._status.update(f"screening articles: {event.message}")
            return
        if event.stage == "claims" and self._status is None:
            return  # the answer is on screen already and says it below the synthesis
        if event.stage == "plan":
            for q in event.data.get("queries", []):
                self._console.print(f"  query: {q}", markup=False)
        elif event.stage != "done":
            self._console.print(f"  {event.message}", markup=False)
        if self._status is not None and event.stage == "synthesize":
            self._status.update("writing the synthesis…")
