"""Benchmark: SMS through the civicgate gateway versus Rasa's own REST channel.

One run, one trained model, and one stack per configuration (``--configs``: ``sqlite``,
or ``pg-G`` / ``pg-GxR`` for G gateway replicas and R Rasa servers on a new database of the
``--database-url`` PostgreSQL server, Redis as Rasa's lock store when R > 1), each
started by :func:`bot.devstack.running_stack` with the gateways' SMS channel pointed at
an in-process Twilio double. A message goes to the next gateway (or Rasa server) in turn,
as a load balancer would send it. For each configuration it measures:

* gateway SMS: N concurrent conversations, each from its own phone number, each message a
  webhook signed like Twilio's and sent only after the previous reply reached the double;
  latency = webhook POST → the reply's arrival at the double (``time.perf_counter()``).
* raw Rasa: the same sequences, same concurrency, posted to ``/webhooks/rest/webhook``;
  latency = request → response. Rasa's custom actions and NLG are still served by the
  gateway, which only acts for senders it knows: each sender id is a gateway conversation
  created beforehand (no Rasa turn). A digit answering a menu is sent as that button's
  payload, as the gateway does for SMS.
* fast path: ``STATUS <reference>`` from each applicant's number, several times;
* open loop: SMS arriving as a Poisson process at ``--offered-load`` (70 %) of the raw
  Rasa throughput just measured, each the next message of a waiting citizen's sequence;
* segments of every SMS reply against ``minimum_segments`` of its own text.

Run from the project root (about a minute to start each stack, plus the run)::

    .venv/bin/python bench/sms_vs_rasa.py --conversations 20
    .venv/bin/python bench/sms_vs_rasa.py --configs sqlite pg-1 pg-2x2 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/1
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bot.conversation import ConversationService  # noqa: E402
from bot.db.session import create_engine, session_factory  # noqa: E402
from bot.devstack import StackConfig, ensure_model, running_stack  # noqa: E402
from bot.rasa_client import RasaClient  # noqa: E402
from bot.settings import Settings  # noqa: E402
from channels.sms.composer import count_segments, minimum_segments  # noqa: E402
from support.db import fresh_database  # noqa: E402
from support.servers import free_port, free_ports, serve  # noqa: E402
from support.twilio_double import (  # noqa: E402
    ACCOUNT_SID,
    FROM_NUMBER,
    TwilioDouble,
    sign,
    twilio_settings,
)

PUBLIC_BASE_URL = "https://civicgate.example.org"
SMS_PATH = "/channels/sms/twilio"
REFERENCE = re.compile(r"\b([A-Z]{2}-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6})\b")
SEQUENCE = (
    "hi", "what do i need for a passport", "i need a birth certificate", "Maria Lopez",
    "21/03/2019", "Ottawa", "Ana Lopez", "1", "thanks",
)  # fmt: skip
REPLY_TIMEOUT = 60.0
Arrival = tuple[float, str]  # perf_counter() at the double, SMS body


class Arrivals(list[dict[str, str]]):
    """The double's ``sent`` list, timing each SMS and handing it to the waiting phone."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.inboxes: dict[str, asyncio.Queue[Arrival]] = {}

    def append(self, item: dict[str, str]) -> None:  # called in the double's server thread
        arrived = time.perf_counter()
        super().append(item)
        inbox = self.inboxes.get(item.get("To", ""))
        if self.loop is not None and inbox is not None:
            self.loop.call_soon_threadsafe(inbox.put_nowait, (arrived, item.get("Body", "")))


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, descendants: bool = True) -> float:
    """User + system CPU time of a process and (``descendants``) its live descendants,
    such as uvicorn's workers, so far (Linux ``/proc``)."""
    if not descendants:
        fields = _stat(pid)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(_stat(int(stat.parent.name))[1])
        except (OSError, ValueError, IndexError):
            continue
    family, total = [pid], 0.0
    while family:
        member = family.pop()
        family.extend(child for child, parent in parents.items() if parent == member)
        try:
            fields = _stat(member)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def stack_processes(stack: StackConfig) -> dict[str, list[int]]:
    """The stack's processes by kind (every gateway replica, every Rasa server), found by
    the port each listens on (``/proc/*/cmdline``)."""
    kinds = {url.rsplit(":", 1)[1]: "gateway" for url in stack.gateway_urls}
    kinds.update({url.rsplit(":", 1)[1]: "rasa" for url in stack.rasa_urls})
    kinds[str(stack.backend_port)] = "backend"
    found: dict[str, list[int]] = {"bench": [os.getpid()]}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        for port, kind in kinds.items():
            if port.encode() in argv and b"python" in argv[0]:
                found.setdefault(kind, []).append(int(cmdline.parent.name))
    return found


def cpu_of(kind: str, pids: list[int]) -> float:
    return sum(cpu_seconds(pid, kind != "bench") for pid in pids)


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    missing: int = 0
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process → CPU seconds in the phase

    def absorb(self, other: Phase) -> None:
        """Pool another phase of the same kind into this one."""
        self.latencies += other.latencies
        self.bodies += other.bodies
        self.missing += other.missing
        self.wall += other.wall
        for name, cpu in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def record(self, answer: tuple[float, str] | None) -> str:
        if answer is None:
            self.missing += 1
            return ""
        self.latencies.append(answer[0])
        self.bodies.append(answer[1])
        return answer[1]


PROCESSES: dict[str, list[int]] = {}  # filled once the stack runs


async def run_phase(jobs: list[Awaitable[Any]], phase: Phase) -> list[Any]:
    before = {kind: cpu_of(kind, pids) for kind, pids in PROCESSES.items()}
    start = time.perf_counter()
    results = await asyncio.gather(*jobs)
    phase.wall = time.perf_counter() - start
    phase.cpu = {kind: cpu_of(kind, pids) - before[kind] for kind, pids in PROCESSES.items()}
    return list(results)


class Phone:
    """A citizen's phone; each message goes to the next gateway replica in turn, as a load
    balancer in front of stateless replicas would send it."""

    def __init__(self, client: httpx.AsyncClient, gateways: Iterator[str], number: str) -> None:
        self.client, self.gateways, self.number = client, gateways, number
        self.inbox: asyncio.Queue[Arrival] = asyncio.Queue()
        self.sent = 0

    async def text(self, body: str) -> tuple[float, str] | None:
        """Latency and body of the SMS answering ``body``; None if none came in time."""
        self.sent += 1
        params = {"MessageSid": f"SMbench{self.number[1:]}{self.sent:06d}{time.time_ns()}",
                  "AccountSid": ACCOUNT_SID, "From": self.number, "To": FROM_NUMBER,
                  "Body": body, "NumMedia": "0"}  # fmt: skip
        headers = {"X-Twilio-Signature": sign(PUBLIC_BASE_URL + SMS_PATH, params),
                   "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        start = time.perf_counter()
        url = next(self.gateways) + SMS_PATH
        response = await self.client.post(url, content=urlencode(params), headers=headers)
        response.raise_for_status()
        try:
            arrived, reply = await asyncio.wait_for(self.inbox.get(), REPLY_TIMEOUT)
        except TimeoutError:
            return None
        return arrived - start, reply


async def sms_conversation(
    phone: Phone, rounds: int, phase: Phase, think: tuple[float, float] | None = None
) -> str | None:
    """The sequence, each message after the previous reply; with ``think``, the citizen
    also reads and types for a random time in that range (seconds) before each message."""
    reference = None
    pause = random.Random(phone.number)  # the same pauses in every run
    for _ in range(rounds):
        for body in SEQUENCE:
            if think is not None:
                await asyncio.sleep(pause.uniform(*think))
            reply = phase.record(await phone.text(body))
            if body == "1" and (found := REFERENCE.search(reply)):
                reference = found.group(1)
    return reference


async def rasa_conversation(
    client: httpx.AsyncClient, rasas: Iterator[str], sender: str, rounds: int, phase: Phase
) -> str | None:
    """The sequence on Rasa's REST channel, each message to the next Rasa server in turn
    (they share the tracker store and, with several, Redis as the lock store)."""
    buttons: list[dict[str, Any]] = []
    reference = None
    for _ in range(rounds):
        for body in SEQUENCE:
            message = body  # a digit picks the last reply's button, as the gateway does
            if body.isdigit() and 1 <= int(body) <= len(buttons):
                message = str(buttons[int(body) - 1]["payload"])
            start = time.perf_counter()
            response = await client.post(
                f"{next(rasas)}/webhooks/rest/webhook",
                json={"sender": sender, "message": message},
            )
            phase.latencies.append(time.perf_counter() - start)
            response.raise_for_status()
            replies = response.json()
            buttons = list(replies[-1].get("buttons") or []) if replies else []
            phase.missing += 0 if replies else 1
            text = " ".join(str(reply.get("text", "")) for reply in replies)
            if body == "1" and (found := REFERENCE.search(text)):
                reference = found.group(1)
    return reference


async def status_checks(phone: Phone, reference: str, repeats: int, phase: Phase) -> None:
    for _ in range(repeats):
        phase.record(await phone.text(f"STATUS {reference}"))


async def status_until(
    phone: Phone, reference: str, done: asyncio.Event, interval: float, phase: Phase
) -> None:
    """``STATUS <reference>`` every ``interval`` seconds until ``done`` (a citizen asking
    while the engine is busy with everyone else)."""
    while not done.is_set():
        phase.record(await phone.text(f"STATUS {reference}"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), interval)


async def mixed_load(
    phones: list[Phone], askers: list[tuple[Phone, str]], nlu: Phase, fast: Phase
) -> None:
    """NLU conversations in a closed loop and, meanwhile, STATUS from other applicants."""
    done = asyncio.Event()

    async def conversations() -> None:
        try:
            await asyncio.gather(*(sms_conversation(p, 1, nlu) for p in phones))
        finally:
            done.set()

    asking = [status_until(p, r, done, 0.25, fast) for p, r in askers]
    start = time.perf_counter()
    await asyncio.gather(conversations(), *asking)
    nlu.wall = fast.wall = time.perf_counter() - start  # no CPU per message: two kinds mixed


async def open_loop(new_phone: Callable[[], Phone], rate: float, seconds: float, phase: Phase,
                    seed: int = 17) -> int:  # fmt: skip
    """Messages arrive as a Poisson process of ``rate`` a second for ``seconds``, whatever
    the replies do: an open loop, where a slow reply does not slow the next arrival. Each
    arrival is the next message of the citizen who has waited longest since their last
    reply; when every citizen is still waiting for one, a new citizen starts the sequence.
    Returns how many citizens took part."""
    gaps = random.Random(seed)
    ready: collections.deque[tuple[Phone, int]] = collections.deque()  # phone, next step
    in_flight: set[asyncio.Task[None]] = set()
    citizens = 0

    async def send(phone: Phone, step: int) -> None:
        phase.record(await phone.text(SEQUENCE[step]))
        if step + 1 < len(SEQUENCE):
            ready.append((phone, step + 1))

    start = due = time.perf_counter()
    while (due := due + gaps.expovariate(rate)) - start < seconds:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if not ready:
            citizens += 1
            ready.append((new_phone(), 0))
        phone, step = ready.popleft()
        task = asyncio.create_task(send(phone, step))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    return citizens


async def rest_conversations(
    stack: StackConfig, count: int, prefix: str = "bench-rest-"
) -> list[str]:
    """Gateway conversation ids to use as Rasa sender ids: the action server (the gateway)
    answers "unknown conversation" for a sender it has no conversation for."""
    url = stack.gateway_database_url
    engine, rasa = create_engine(url), RasaClient(stack.rasa_url, token=stack.rasa_token)
    service = ConversationService(Settings(database_url=url), session_factory(engine), rasa)
    try:
        found = [await service.participant("rest", f"{prefix}{i}") for i in range(count)]
    finally:
        await rasa.aclose()
        await engine.dispose()
    return [participant.conversation_id for participant in found]


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def throughput(phase: Phase) -> float:
    return (len(phase.latencies) + phase.missing) / phase.wall


def report(label: str, phase: Phase) -> None:
    n = len(phase.latencies) + phase.missing
    print(
        f"{label:<12} messages {n:4d}  wall {phase.wall:6.2f} s  "
        f"throughput {throughput(phase):6.2f} msg/s  p50 {percentile(phase.latencies, 50):.3f} s  "
        f"p99 {percentile(phase.latencies, 99):.3f} s  no reply {phase.missing}"
    )
    if phase.cpu and n:
        shares = "  ".join(f"{name} {1000 * cpu / n:5.1f}" for name, cpu in phase.cpu.items())
        print(f"{'':12} CPU ms per message: {shares}")


@dataclass
class Outcome:
    """One configuration's headline figures, for the summary of a run."""

    config: str
    raw: float  # raw Rasa closed-loop throughput, msg/s: the capacity the offer is set from
    sms: float  # gateway SMS closed-loop throughput, msg/s
    offered: float  # open loop, msg/s
    open_loop: Phase


async def bench(
    label: str, stack: StackConfig, arrivals: Arrivals, args: argparse.Namespace
) -> Outcome:
    arrivals.loop = asyncio.get_running_loop()
    arrivals.inboxes.clear()
    PROCESSES.clear()
    PROCESSES.update(stack_processes(stack))
    gateways, rasas = itertools.cycle(stack.gateway_urls), itertools.cycle(stack.rasa_urls)
    limits = httpx.Limits(max_connections=4 * args.conversations + 400)
    async with httpx.AsyncClient(timeout=REPLY_TIMEOUT, limits=limits) as client:

        def phone(number: str) -> Phone:
            made = Phone(client, gateways, number)
            arrivals.inboxes[number] = made.inbox
            return made

        # Warm-up, not measured: one whole sequence on each path (first uses are slow).
        (warm_sender,) = await rest_conversations(stack, 1, "bench-rest-warm-")
        warm = phone("+15145559999")
        warm_reference = await sms_conversation(warm, 1, Phase())
        await rasa_conversation(client, rasas, warm_sender, 1, Phase())

        # Unloaded: one citizen alone, NLU turns then STATUS (the fast path's own cost).
        alone, alone_fast = Phase(), Phase()
        lone = phone("+15145558888")
        (lone_reference,) = await run_phase([sms_conversation(lone, 1, alone)], alone)
        if lone_reference is not None:
            checks = [status_checks(lone, lone_reference, 4 * args.status_repeats, alone_fast)]
            await run_phase(checks, alone_fast)

        paced = Phase()
        if args.think:
            paced_phones = [phone(f"+1514556{1000 + i:04d}") for i in range(args.conversations)]
            jobs = [sms_conversation(p, 1, paced, args.think) for p in paced_phones]
            await run_phase(jobs, paced)
        # Closed loop, in pairs of one SMS phase and one raw phase on new conversations,
        # alternating which goes first: a shared machine drifts, and each pair's ratio
        # compares two phases a few seconds apart.
        sms, raw, fast = Phase(), Phase(), Phase()
        pairs: list[tuple[Phase, Phase]] = []
        phones: list[Phone] = []
        references: list[str | None] = []
        raw_references: list[str | None] = []
        for pair in range(args.pairs):
            numbers = [f"+1515{pair:02d}5{1000 + i:04d}" for i in range(args.conversations)]
            pair_phones = [phone(number) for number in numbers]
            prefix = f"bench-rest-{pair}-"
            pair_senders = await rest_conversations(stack, args.conversations, prefix)
            sms_pair, raw_pair = Phase(), Phase()
            sms_jobs = [sms_conversation(p, args.rounds, sms_pair) for p in pair_phones]
            raw_jobs = [
                rasa_conversation(client, rasas, sender, args.rounds, raw_pair)
                for sender in pair_senders
            ]
            if pair % 2:
                raw_references += await run_phase(raw_jobs, raw_pair)
                references_pair = await run_phase(sms_jobs, sms_pair)
            else:
                references_pair = await run_phase(sms_jobs, sms_pair)
                raw_references += await run_phase(raw_jobs, raw_pair)
            pairs.append((sms_pair, raw_pair))
            phones += pair_phones
            references += references_pair
        for pooled, index in ((sms, 0), (raw, 1)):
            for both in pairs:
                pooled.absorb(both[index])
        first_pair = zip(phones[: args.conversations], references, strict=False)
        checks = [(p, r) for p, r in first_pair if r is not None]
        await run_phase([status_checks(p, r, args.status_repeats, fast) for p, r in checks], fast)
        mixed, mixed_fast = Phase(), Phase()
        askers = [(warm, warm_reference), (lone, lone_reference)]
        mixed_phones = [phone(f"+1514557{1000 + i:04d}") for i in range(args.conversations)]
        ready = [(p, r) for p, r in askers if r is not None]
        await mixed_load(mixed_phones, ready, mixed, mixed_fast)
        # Open loop at a share of the raw capacity just measured (issue 17's p99 target).
        offered, opened = args.offered_load * throughput(raw), Phase()
        numbers = (f"+1514558{n:04d}" for n in itertools.count())
        open_jobs = [open_loop(lambda: phone(next(numbers)), offered, args.open_seconds, opened)]
        (citizens,) = await run_phase(open_jobs, opened)
        extra = sum(inbox.qsize() for inbox in arrivals.inboxes.values())

    print(f"\n{label}: {len(stack.gateway_urls)} gateway(s) x {args.gateway_workers} "
          f"worker(s), {len(stack.rasa_urls)} Rasa server(s), gateway database "
          f"{stack.gateway_database_url.split(':', 1)[0]}; conversations {args.conversations}, "
          f"rounds {args.rounds}, {len(SEQUENCE)} messages per round, "
          f"{os.cpu_count()}-core loopback stack")  # fmt: skip
    report("alone NLU", alone)
    report("alone STATUS", alone_fast)
    ratio = percentile(alone.latencies, 50) / percentile(alone_fast.latencies, 50)
    print(f"unloaded NLU turn p50 / fast-path p50: {ratio:.1f}x  (target >= 10x)")
    if args.think:
        print(f"paced: {args.conversations} conversations, {args.think[0]:g}-{args.think[1]:g} s "
              "between a reply and the next message")  # fmt: skip
        report("paced SMS", paced)
    print("closed loop (no think time):")
    ratios = [throughput(a) / throughput(b) for a, b in pairs]
    for number, (sms_pair, raw_pair) in enumerate(pairs, 1):
        print(f"pair {number}: gateway SMS {throughput(sms_pair):6.2f} msg/s, raw Rasa "
              f"{throughput(raw_pair):6.2f} msg/s, ratio {ratios[number - 1]:.2f}")  # fmt: skip
    print(f"all {len(pairs)} pairs pooled:")
    report("gateway SMS", sms)
    report("raw Rasa", raw)
    print(f"throughput ratio gateway/raw: median of pairs {statistics.median(ratios):.2f}, "
          f"pooled {throughput(sms) / throughput(raw):.2f}  (target >= 0.9)")  # fmt: skip
    report("fast path", fast)
    print(f"references obtained: SMS {sum(r is not None for r in references)}, raw Rasa "
          f"{sum(r is not None for r in raw_references)}, of {len(phones)}")  # fmt: skip
    ratio = percentile(sms.latencies, 50) / percentile(fast.latencies, 50)
    print(f"loaded NLU turn p50 / fast-path p50: {ratio:.1f}x")
    print(f"mixed: {args.conversations} NLU conversations in a closed loop, and meanwhile "
          f"{len(ready)} applicants sending STATUS every 0.25 s")  # fmt: skip
    report("mixed NLU", mixed)
    report("mixed STATUS", mixed_fast)
    ratio = percentile(mixed.latencies, 50) / percentile(mixed_fast.latencies, 50)
    print(f"NLU turn p50 / fast-path p50 under the same load: {ratio:.1f}x  (target >= 10x)")
    replies = sms.bodies + fast.bodies + mixed.bodies + mixed_fast.bodies
    segments = [count_segments(body).segments for body in replies]
    over = sum(s > minimum_segments(b) for s, b in zip(segments, replies, strict=True))
    print(f"segments per SMS reply: {statistics.mean(segments):.2f} average over "
          f"{len(replies)} replies; above minimum_segments: {over}")  # fmt: skip
    print(f"open loop: Poisson arrivals at {offered:.2f} msg/s ({args.offered_load:.0%} of "
          f"raw Rasa's pooled closed-loop throughput) for {args.open_seconds:g} s, "
          f"{citizens} citizens")  # fmt: skip
    report("open SMS", opened)
    print(f"unexpected extra SMS (more than one per message): {extra}")
    return Outcome(label, throughput(raw), throughput(sms), offered, opened)


def layout(name: str) -> tuple[int, int]:
    """``sqlite`` or ``pg-G`` / ``pg-GxR``: G gateway replicas, R Rasa servers."""
    if name == "sqlite":
        return 1, 1
    found = re.fullmatch(r"pg-(\d+)(?:x(\d+))?", name)
    if found is None:
        raise argparse.ArgumentTypeError(f"a configuration is sqlite, pg-G or pg-GxR: {name!r}")
    return int(found.group(1)), int(found.group(2) or 1)


def summary(outcomes: list[Outcome], share: float) -> None:
    print(f"\nsummary: open loop at {share:.0%} of each configuration's raw Rasa throughput "
          "(target: p99 webhook -> reply under 1 s, on PostgreSQL)")  # fmt: skip
    print(f"{'config':<10} {'raw msg/s':>9} {'SMS msg/s':>9} {'offered':>8} {'messages':>8} "
          f"{'p50 s':>6} {'p99 s':>6} {'no reply':>8}")  # fmt: skip
    for o in outcomes:
        n = len(o.open_loop.latencies) + o.open_loop.missing
        print(f"{o.config:<10} {o.raw:9.2f} {o.sms:9.2f} {o.offered:8.2f} {n:8d} "
              f"{percentile(o.open_loop.latencies, 50):6.3f} "
              f"{percentile(o.open_loop.latencies, 99):6.3f} {o.open_loop.missing:8d}")  # fmt: skip


def run_config(
    label: str, args: argparse.Namespace, model: Path, arrivals: Arrivals, extra_env: dict[str, str]
) -> Outcome:
    gateways, rasas = layout(label)
    data_dir = Path(tempfile.mkdtemp(prefix=f"civicgate-bench-{label}-"))
    print(f"{label}: data and logs in {data_dir}", flush=True)
    database = ""
    if label != "sqlite":
        if not args.database_url:
            raise SystemExit(f"{label} needs --database-url (a PostgreSQL server, superuser)")
        database = fresh_database(args.database_url, "bench_sms")
    config = StackConfig(
        gateway_port=free_ports(gateways), rasa_port=free_ports(rasas), backend_port=free_port(),
        data_dir=data_dir, gateway_extra_env=extra_env, gateway_workers=args.gateway_workers,
        database_url=database, redis_url=args.redis_url if rasas > 1 else "",
        tracker_url="" if database else f"sqlite:///{data_dir / 'rasa_tracker.db'}",
        gateway_replicas=gateways, rasa_replicas=rasas,
    )  # fmt: skip
    with running_stack(config, model, logs=data_dir) as stack:
        return asyncio.run(bench(label, stack, arrivals, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="times each sequence is repeated")
    parser.add_argument(
        "--pairs", type=int, default=4, help="closed-loop SMS / raw Rasa phase pairs"
    )
    parser.add_argument("--status-repeats", type=int, default=5, help="STATUS per applicant")
    parser.add_argument(
        "--think", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"),
        help="paced phase: seconds a citizen takes between a reply and the next message",
    )  # fmt: skip
    parser.add_argument("--no-paced", dest="think", action="store_const", const=None)
    parser.add_argument(
        "--gateway-workers", type=int, default=1, metavar="N",
        help="uvicorn worker processes per gateway replica",
    )  # fmt: skip
    parser.add_argument(
        "--configs", nargs="+", default=["sqlite"], metavar="CONFIG",
        help="stacks to measure one after the other: sqlite, pg-G or pg-GxR (G gateway "
        "replicas, R Rasa servers, on the --database-url server; R > 1 needs --redis-url)",
    )  # fmt: skip
    parser.add_argument("--database-url", default="", help="a PostgreSQL server (superuser)")
    parser.add_argument("--redis-url", default="", help="Redis, Rasa's lock store for R > 1")
    parser.add_argument(
        "--offered-load", type=float, default=0.7, metavar="SHARE",
        help="open loop: arrivals at this share of the raw Rasa throughput just measured",
    )  # fmt: skip
    parser.add_argument("--open-seconds", type=float, default=60, help="open loop's length")
    args = parser.parse_args()
    for label in args.configs:
        layout(label)  # refuse a malformed one before anything starts
    model = ensure_model()
    arrivals = Arrivals()  # the double's record of sent SMS, timed
    with serve(TwilioDouble(sent=arrivals).app()) as server:
        settings = twilio_settings(server.url, PUBLIC_BASE_URL)
        extra_env = {key.upper(): str(value) for key, value in settings.items()}
        extra_env["SMS_RATE_LIMIT_MESSAGES"] = "1000"
        outcomes = [run_config(label, args, model, arrivals, extra_env) for label in args.configs]
    summary(outcomes, args.offered_load)


if __name__ == "__main__":
    main()
