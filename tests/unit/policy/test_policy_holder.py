"""Safe hot reload: a new snapshot is swapped in only once it loads, passes checks and tests, is audited."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from policy_helpers import PolicyCopy, append, edit

from gateway.domain import AuditEvent, AuditKind, DisclosureLevel
from gateway.errors import AuditUnavailable
from gateway.policy import PolicyHolder, PolicyWatcher, content_hash

CELL = ("housing_officer", "s47_enquiry", "education", "education.attendance")
WIDER = (
    "p, role:housing_officer, agency:education, cat:education.attendance, purpose:child_protection, "
    "PERTINENT, allow\n"
)


class Recorder:
    """An audit sink that keeps events, and can be told to fail."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.fail = False

    async def __call__(self, event: AuditEvent) -> None:
        if self.fail:
            raise AuditUnavailable("audit store down")
        self.events.append(event)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def widened(policy_copy: PolicyCopy) -> Path:
    directory = policy_copy()
    append(directory / "agencies" / "education.csv", WIDER)
    return directory


async def test_valid_change_is_activated_and_audited(policy_copy: PolicyCopy, recorder: Recorder) -> None:
    """A changed, valid policy becomes current and a POLICY_ACTIVATION event carries its version."""
    holder = PolicyHolder.from_directory(policy_copy(), on_event=recorder)
    old = holder.version
    assert holder.current.decide(*CELL).level is DisclosureLevel.EXISTS
    new_dir = widened(policy_copy)
    outcome = await holder.reload(
        new_dir, trigger="admin", caller="spiffe://mash.local/agency/hub/system/policy-admin"
    )
    assert outcome.activated
    assert not outcome.unchanged
    assert outcome.previous_version == old
    assert outcome.version == holder.version == content_hash(new_dir)
    assert holder.current.decide(*CELL).level is DisclosureLevel.PERTINENT
    [event] = recorder.events
    assert event.kind is AuditKind.POLICY_ACTIVATION
    assert event.policy_version == outcome.version
    assert event.details["previous_version"] == old
    assert event.details["trigger"] == "admin"
    assert event.caller.endswith("/policy-admin")


async def test_unchanged_directory_is_not_reactivated(policy_copy: PolicyCopy, recorder: Recorder) -> None:
    """Reloading the files already active does nothing and audits nothing."""
    directory = policy_copy()
    holder = PolicyHolder.from_directory(directory, on_event=recorder)
    outcome = await holder.reload()
    assert outcome.unchanged
    assert not outcome.activated
    assert recorder.events == []


@pytest.mark.parametrize(
    "breakage", ["syntax error", "undeclared name", "failing policy test", "over-broad rule"]
)
async def test_broken_policy_is_refused_and_the_last_good_one_keeps_serving(
    policy_copy: PolicyCopy, recorder: Recorder, breakage: str
) -> None:
    """A syntax error, undeclared name, failing test or blocking check is refused and audited; no change."""
    good = policy_copy()
    holder = PolicyHolder.from_directory(good, on_event=recorder)
    before = holder.current
    bad = policy_copy(
        {
            "syntax error": "syntax_error",
            "failing policy test": "failing_test",
            "over-broad rule": "lint_findings",
        }.get(breakage)
    )
    if breakage == "undeclared name":
        edit(bad / "agencies" / "csc.csv", "role:mash_researcher_csc", "role:mash_researcher_cs")
    outcome = await holder.reload(bad)
    assert not outcome.activated
    assert holder.current is before
    assert outcome.version == before.version
    assert outcome.findings
    assert all(f.file and f.line >= 0 for f in outcome.findings)
    [event] = recorder.events
    assert event.kind is AuditKind.POLICY_REJECTED
    assert event.policy_version == outcome.attempted_version == content_hash(bad)
    assert event.reason.startswith("refused: ")
    assert str(outcome.findings[0]) in event.reason


async def test_activation_that_cannot_be_audited_is_not_activated(
    policy_copy: PolicyCopy, recorder: Recorder
) -> None:
    """If the activation entry cannot be written, the previous snapshot stays active."""
    holder = PolicyHolder.from_directory(policy_copy(), on_event=recorder)
    before = holder.current
    recorder.fail = True
    outcome = await holder.reload(widened(policy_copy))
    assert not outcome.activated
    assert holder.current is before
    assert "could not be audited" in outcome.findings[0].message


async def test_refusal_that_cannot_be_audited_still_returns_the_findings(
    policy_copy: PolicyCopy, recorder: Recorder
) -> None:
    """A refusal changes nothing, so an audit outage does not turn it into an exception."""
    holder = PolicyHolder.from_directory(policy_copy(), on_event=recorder)
    recorder.fail = True
    outcome = await holder.reload(policy_copy("syntax_error"))
    assert not outcome.activated
    assert outcome.findings


def test_first_load_refuses_a_broken_policy(policy_copy: PolicyCopy) -> None:
    """A gateway cannot start on a policy whose own tests fail."""
    from gateway.errors import PolicyError

    with pytest.raises(PolicyError) as caught:
        PolicyHolder.from_directory(policy_copy("failing_test"))
    assert any(f.file == "tests/zz_failing.yaml" for f in caught.value.findings)


RELOADS = 20


async def test_concurrent_decisions_through_reloads_match_their_snapshot(
    policy_copy: PolicyCopy, recorder: Recorder
) -> None:
    """While 20 reloads alternate two policies, every decision matches the snapshot it was made under.

    Each reload validates the whole policy in a worker thread while the readers run; the readers pause after
    every few decisions so the validation is not starved of the GIL (100 reloads took minutes in a full run).
    """
    narrow, wide = policy_copy(), widened(policy_copy)
    expected = {content_hash(narrow): DisclosureLevel.EXISTS, content_hash(wide): DisclosureLevel.PERTINENT}
    holder = PolicyHolder.from_directory(narrow, on_event=recorder)
    stop = threading.Event()
    wrong: list[tuple[str, DisclosureLevel]] = []
    seen: set[str] = set()
    counts = {"decisions": 0}

    def decide_once() -> None:
        snapshot = holder.current  # one read pins the snapshot for the whole "request"
        level = snapshot.decide(*CELL).level
        per_query = snapshot.decisions_for(CELL[0], CELL[1])[CELL[2]][CELL[3]].level
        if level is not expected[snapshot.version] or per_query is not level:
            wrong.append((snapshot.version, level))
        seen.add(snapshot.version)
        counts["decisions"] += 1

    def thread_reader() -> None:
        while not stop.is_set():
            for _ in range(20):
                decide_once()
            time.sleep(0.002)  # leave the GIL to the reload being validated

    async def task_reader() -> None:
        while not stop.is_set():
            decide_once()
            await asyncio.sleep(0)

    threads = [threading.Thread(target=thread_reader) for _ in range(2)]
    for t in threads:
        t.start()
    tasks = [asyncio.create_task(task_reader()) for _ in range(4)]
    try:
        for i in range(RELOADS):
            outcome = await holder.reload(wide if i % 2 == 0 else narrow)
            assert outcome.activated, outcome.findings
    finally:
        stop.set()
        for t in threads:
            t.join()
        await asyncio.gather(*tasks)
    assert wrong == []
    assert seen == set(expected)
    assert counts["decisions"] > 100
    assert [e.kind for e in recorder.events] == [AuditKind.POLICY_ACTIVATION] * RELOADS


async def test_watcher_reloads_a_settled_change_once(policy_copy: PolicyCopy, recorder: Recorder) -> None:
    """The watcher notices a content change, waits for it to settle, reloads, and does not retry a refusal."""
    directory = policy_copy()
    holder = PolicyHolder.from_directory(directory, on_event=recorder)
    watcher = PolicyWatcher(holder, directory, interval=0.01)
    assert await watcher.check_once() is None  # nothing changed
    append(directory / "agencies" / "education.csv", WIDER)
    assert await watcher.check_once() is None  # changed, not yet settled
    outcome = await watcher.check_once()
    assert outcome is not None
    assert outcome.activated
    assert holder.current.decide(*CELL).level is DisclosureLevel.PERTINENT
    append(
        directory / "agencies" / "education.csv",
        "p, role:nobody, agency:education, cat:education, purpose:s47_enquiry, FULL, allow\n",
    )
    await watcher.check_once()
    refused = await watcher.check_once()
    assert refused is not None
    assert not refused.activated
    assert await watcher.check_once() is None  # the same broken content is not tried again
    assert [e.kind for e in recorder.events] == [AuditKind.POLICY_ACTIVATION, AuditKind.POLICY_REJECTED]
    assert all(e.details["trigger"] == "watch" for e in recorder.events)


async def test_watcher_task_runs_until_stopped(policy_copy: PolicyCopy, recorder: Recorder) -> None:
    """Started as a task, the watcher reloads on its own and stops cleanly."""
    directory = policy_copy()
    holder = PolicyHolder.from_directory(directory, on_event=recorder)
    watcher = PolicyWatcher(holder, directory, interval=0.01)
    watcher.start()
    try:
        append(directory / "agencies" / "education.csv", WIDER)
        for _ in range(500):
            if recorder.events:
                break
            await asyncio.sleep(0.01)
    finally:
        await watcher.stop()
    assert [e.kind for e in recorder.events] == [AuditKind.POLICY_ACTIVATION]
    with pytest.raises(ValueError, match="positive"):
        PolicyWatcher(holder, directory, interval=0)


def vanishing(monkeypatch: pytest.MonkeyPatch, name: str, times: int, *, after: int = 0) -> None:
    """Make reading the policy file `name` fail as if it were mid-rewrite, `times` times after `after` reads."""
    real = Path.read_bytes
    left = {"skip": after, "n": times}

    def read_bytes(self: Path) -> bytes:
        if self.name == name and left["skip"] > 0:
            left["skip"] -= 1
        elif self.name == name and left["n"] > 0:
            left["n"] -= 1
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


async def test_file_vanishing_mid_reload_is_an_audited_refusal(
    policy_copy: PolicyCopy, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy file missing part-way through a reload is refused and audited, not raised."""
    directory = policy_copy()
    holder = PolicyHolder.from_directory(directory, on_event=recorder)
    before = holder.current
    append(directory / "agencies" / "education.csv", WIDER)
    vanishing(monkeypatch, "probation.csv", 2)
    outcome = await holder.reload(trigger="sighup")
    assert not outcome.activated
    assert holder.current is before
    [finding] = outcome.findings
    assert finding.file == "agencies/probation.csv"
    assert "could not be read" in finding.message
    [event] = recorder.events
    assert event.kind is AuditKind.POLICY_REJECTED
    assert "agencies/probation.csv" in event.reason


async def test_watcher_keeps_polling_after_a_poll_fails(
    policy_copy: PolicyCopy, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error in one poll is logged and the watcher goes on to pick up the change."""
    directory = policy_copy()
    holder = PolicyHolder.from_directory(directory, on_event=recorder)
    watcher = PolicyWatcher(holder, directory, interval=0.01)
    real_reload = holder.reload
    failures = {"n": 0}

    async def flaky_reload(*args: object, **kwargs: object) -> object:
        if failures["n"] == 0:
            failures["n"] += 1
            raise FileNotFoundError(2, "No such file or directory", "probation.csv")
        return await real_reload(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(holder, "reload", flaky_reload)
    task = watcher.start()
    try:
        append(directory / "agencies" / "education.csv", WIDER)
        for _ in range(500):
            if failures["n"] or task.done():
                break
            await asyncio.sleep(0.01)
        append(directory / "agencies" / "education.csv", "# a later edit\n")
        for _ in range(500):
            if recorder.events or task.done():
                break
            await asyncio.sleep(0.01)
        assert not task.done()
    finally:
        await watcher.stop()
    assert failures["n"] == 1
    assert [e.kind for e in recorder.events] == [AuditKind.POLICY_ACTIVATION]
    assert holder.current.decide(*CELL).level is DisclosureLevel.PERTINENT


async def test_watcher_retries_a_version_whose_activation_could_not_be_audited(
    policy_copy: PolicyCopy, recorder: Recorder
) -> None:
    """A good policy refused only because the audit log was down is activated once the log is back."""
    directory = policy_copy()
    holder = PolicyHolder.from_directory(directory, on_event=recorder)
    watcher = PolicyWatcher(holder, directory, interval=0.01)
    append(directory / "agencies" / "education.csv", WIDER)
    recorder.fail = True
    assert await watcher.check_once() is None  # changed, not yet settled
    failed = await watcher.check_once()
    assert failed is not None
    assert not failed.activated
    assert failed.retry
    recorder.fail = False
    outcomes = [await watcher.check_once() for _ in range(3)]
    assert any(o is not None and o.activated for o in outcomes)
    assert holder.version == content_hash(directory)
    assert [e.kind for e in recorder.events] == [AuditKind.POLICY_ACTIVATION]


async def test_watcher_retries_a_version_that_could_not_be_read(
    policy_copy: PolicyCopy, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version refused because a file vanished mid-read is tried again, and activated, on a later poll."""
    directory = policy_copy()
    holder = PolicyHolder.from_directory(directory, on_event=recorder)
    watcher = PolicyWatcher(holder, directory, interval=0.01)
    append(directory / "agencies" / "education.csv", WIDER)
    assert await watcher.check_once() is None
    # Read once by the watcher's poll and once for the version the reload tries; then it vanishes.
    vanishing(monkeypatch, "probation.csv", 1, after=2)
    failed = await watcher.check_once()
    assert failed is not None
    assert failed.retry
    assert not failed.activated
    outcomes = [await watcher.check_once() for _ in range(3)]
    assert any(o is not None and o.activated for o in outcomes)
    assert [e.kind for e in recorder.events] == [AuditKind.POLICY_REJECTED, AuditKind.POLICY_ACTIVATION]


async def test_refusal_for_the_policy_itself_is_not_marked_for_retry(
    policy_copy: PolicyCopy, recorder: Recorder
) -> None:
    """A policy refused for its own findings, with the refusal audited, is not to be tried again."""
    holder = PolicyHolder.from_directory(policy_copy(), on_event=recorder)
    outcome = await holder.reload(policy_copy("failing_test"))
    assert not outcome.activated
    assert not outcome.retry


async def test_gateway_keeps_loading_and_reloading_after_an_agreement_expires(
    policy_copy: PolicyCopy, recorder: Recorder
) -> None:
    """After the agreements end the policy still activates and reloads; only requests citing them are refused."""
    from datetime import UTC, datetime

    from gateway.testing import FixedClock

    clock = FixedClock(datetime(2028, 1, 2, tzinfo=UTC))
    holder = PolicyHolder.from_directory(policy_copy(), on_event=recorder, clock=clock)
    outcome = await holder.reload(widened(policy_copy), trigger="admin")
    assert outcome.activated
    assert not holder.current.agreement_allows("mash-isa-2026", "education", "education.attendance",
                                               "s47_enquiry", clock.now().date())
