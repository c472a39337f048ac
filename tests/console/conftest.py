"""A real partnership (`dev up`: gateway and stub nodes), a real console process and one headless Chromium.

Everything is module-scoped and started once (module, not session: the Playwright sync API runs an event
loop of its own, which must be gone before any asyncio test of another module starts). The partnership is
seeded over the gateway's own API (a researcher's query, a refused query, a police notification) so each
group's pages have something to show. The gateway keeps a real policy release store holding one proposal
that widens a line of education's and of housing's policy and narrows one of probation's, approved so far by
education's IG officer only.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agency_stubs import cast
from gateway.console.accounts import add_user
from gateway.console.demo import CONSOLE_ROLES, seed
from tests.release_store import make_release_store

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("MASH_CHROMIUM", "/usr/bin/chromium"))
AXE = ROOT / "tests" / "console" / "node_modules" / "axe-core" / "axe.min.js"
# Every run takes the screenshots; `make console-screenshots` points them at docs/console to refresh the docs.
SCREENSHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS", ROOT / "build" / "console-screenshots"))
PASSWORD = "correct horse battery"
# Who signs in, with which roles; nobody.ned holds a role the console's certificate is not bound to.
PEOPLE = {
    "dpo.ada": ["auditor"],
    "ig.ian": ["policy_admin"],
    "manager.mo": ["mash_manager"],
    "reviewer.hana": ["health_designated_professional"],
    "nobody.ned": ["social_worker"],
    "multi.max": ["auditor", "mash_manager"],
    "locked.lou": ["auditor"],  # only for the sign-in lockout test
}
# The proposed release: (agency, line of the shipped policy, what it becomes; no line for a new one).
RELEASE_EDITS = (
    ("education", "", "p, role:housing_officer, agency:education, cat:education.attendance, "
                      "purpose:child_protection, PERTINENT, allow\n"),
    ("housing", "p, role:social_worker, agency:housing, cat:housing, purpose:child_protection, PERTINENT",
     "p, role:social_worker, agency:housing, cat:housing, purpose:child_protection, FULL"),
    ("probation", "p, role:police_officer, agency:probation, cat:probation, purpose:child_protection, PERTINENT",
     "p, role:police_officer, agency:probation, cat:probation, purpose:child_protection, EXISTS"),
)
# Every identifier the run puts through the console: none may appear in a URL or the access log.
IDENTIFIERS = tuple(v for member in (cast.KAI_MERCER, cast.NOAH_FENWICK)
                    for v in (member.nhs_number, member.given_name, member.family_name, member.date_of_birth))

pytestmark = pytest.mark.slow


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, check=False, input=stdin)


@dataclass
class World:
    gateway: str
    pki: Path
    state: Path
    base: str = ""
    console_log: Path = field(default_factory=Path)
    referral_id: str = ""
    release_id: str = ""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = tmp_path_factory.mktemp("console")
    releases = make_release_store(state / "release", ROOT / "policies", RELEASE_EDITS,
                                  ig_officers=["education", "housing"])
    releases.approve("education")
    up = cli("dev", "up", "--state-dir", str(state / "dev"), "--listen", "127.0.0.1:0", "--people", "200",
             "--policy-releases", str(releases.store), "--policy-signers", str(releases.signers))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        run = json.loads((state / "dev" / "dev.json").read_text())
        world = World(gateway=run["gateway"], pki=state / "dev" / "pki", state=state,
                      release_id=releases.version)
        world.referral_id = asyncio.run(seed(world.gateway, world.pki))
        accounts = state / "accounts.json"
        for user, roles in PEOPLE.items():
            add_user(accounts, user, PASSWORD, roles)
        world.console_log = state / "console.log"
        with world.console_log.open("wb") as log:
            console = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli.main", "console", "serve", "--gateway", world.gateway,
                 "--pki-dir", str(world.pki), "--client", "hub-console", "--accounts", str(accounts),
                 "--listen", "127.0.0.1:0", "--insecure-http", "--page-size", "5",
                 *[f"--bound-role={r}" for r in CONSOLE_ROLES]],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
        try:
            assert console.stdout is not None
            line = console.stdout.readline().decode()
            assert "console listening on" in line, world.console_log.read_text()
            world.base = line.split()[-1]
            yield world
        finally:
            console.terminate()
            console.wait(timeout=10)
    finally:
        cli("dev", "down", "--state-dir", str(state / "dev"))


@pytest.fixture(scope="module")
def browser_urls() -> list[str]:
    """Every URL the browser requested during the run."""
    return []


@pytest.fixture(scope="module")
def browser(world: World) -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is needed at {CHROMIUM}: install the Debian package `chromium` (.ci/run does)")
    if not AXE.exists():
        pytest.fail("axe-core is needed for the accessibility checks: run `make console-test-deps` (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield launched
        launched.close()


def wait_for_log(path: Path, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text()
        if text in content:
            return content
        time.sleep(0.05)
    return path.read_text()
