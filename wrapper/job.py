"""Run exactly one job: work dir, input sandbox, payload, output sandbox, final state.

``JobRun.run`` never raises for anything the job or the node did wrong: every failure ends
as a ``JobOutcome`` with a DIRAC-like minor status and a flag saying whether the node (not
the user's payload) is to blame, so the pilot can ask for a reschedule.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional, Protocol

from protocol import JobAssignment, JobStatus
from wrapper.config import ContainerSettings, WrapperConfig
from wrapper.container import CONTAINER_PATH, CONTAINER_WORKDIR
from wrapper.devices import Allocation, core_env, gpu_env, thread_affinity
from wrapper.errors import SandboxError, TransportUnreachable, WrapperError
from wrapper.identity import hand_over
from wrapper.outcome import CAUGHT, JobOutcome, MinorStatus, Step, Verdict, blame, judge
from wrapper.patterns import ScanLimits, path_inside
from wrapper.runtime import ContainerRuntime, RunningPayload, RunResult, RunSpec
from wrapper.sandbox import PackResult, pack, unpack
from wrapper.selection import (
    RUNTIMES,
    Choice,
    choose_runtime,
    job_network,
    job_wants_gpu,
)
from wrapper.watchdog import LimitHit, Watchdog

logger = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
SUPERVISE_POLL_S = 0.1
MAX_UPLOAD_BACKOFF_S = 60.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class SandboxTransport(Protocol):
    """Moves sandbox archives between the node and the coordinator (the pilot's client)."""

    def download_sandbox(self, sha256: str, dest: Path) -> None:
        """Write the archive to ``dest``, hashing it on the way: raise ``ChecksumMismatch``
        (``wrapper.errors``) unless its bytes hash to ``sha256``, anything else on failure.
        The wrapper does not read the archive again to hash it."""
        ...

    def upload_sandbox(self, path: Path, sha256: str) -> None:
        """Upload the archive at ``path``; raise on failure."""
        ...


class _Abort(WrapperError):
    """Ends the job early with a verdict; internal to ``JobRun``."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.minor_status)
        self.verdict = verdict


def _blamed(step: Step, error: BaseException) -> _Abort:
    return _Abort(blame(step, error))


def _user_env(description: Mapping[str, object]) -> dict[str, str]:
    """DIRAC's ExecutionEnvironment attribute: ``NAME=value`` strings set for the payload."""
    raw = description.get("ExecutionEnvironment") or []
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if sep and _ENV_NAME.match(name.strip()):
            env[name.strip()] = value
        else:
            logger.warning("ignoring ExecutionEnvironment entry %r", item)
    return env


def _work_file(workdir: Path, name: str) -> Path:
    """A payload output file inside the work dir; refuse names that would leave it."""
    path = path_inside(workdir, name)
    if path is None:
        minor = MinorStatus.INVALID_OUTPUT_NAME.with_detail(name)
        raise _Abort(Verdict(JobStatus.FAILED, minor))
    return path


class JobRun:
    """One job from an empty work dir to its final outcome."""

    def __init__(
        self,
        assignment: JobAssignment,
        workdir: Path,
        transport: SandboxTransport,
        config: WrapperConfig,
        *,
        on_running: Optional[Callable[[], None]] = None,
        on_payload_started: Optional[Callable[[], None]] = None,
        on_payload_lasting: Optional[Callable[[], None]] = None,
        payload_user: Optional[int] = None,
        allocation: Optional[Allocation] = None,
    ) -> None:
        self.assignment = assignment
        # The cores and GPUs the pilot gave this job (``wrapper.devices``).
        self.allocation = allocation or Allocation()
        self.workdir = workdir
        self._transport = transport
        self._config = config
        self._on_running = on_running
        # Called once the payload has opened its output files (live log shipping is armed).
        self._on_payload_started = on_payload_started
        # Called once if the payload still runs after the first supervision poll: what is
        # only worth a thread for a payload that lasts (live log shipping) starts then.
        self._on_payload_lasting = on_payload_lasting
        # The job's own uid (``wrapper.identity``): its work dir is handed over before start.
        self._payload_user = payload_user
        self._lock = threading.Lock()
        self._kill_requested = threading.Event()
        self._kill_reason = ""
        self._payload: Optional[RunningPayload] = None
        self._final_usage: Optional[tuple[float, int]] = None
        self._limit_hit: Optional[LimitHit] = None
        self._runtime_name = ""
        self._timings_s: dict[str, float] = {}
        self._output_pending: Optional[Path] = None
        self._id = assignment.job_id

    def kill(self, reason: str) -> None:
        """Ask for the job to be killed; ``run`` then ends it as KILLED. Any thread."""
        with self._lock:
            if not self._kill_requested.is_set():
                self._kill_reason = reason or "no reason given"
                self._kill_requested.set()
        logger.info("job %d: kill requested (%s)", self.assignment.job_id, reason)

    @property
    def payload_pid(self) -> Optional[int]:
        """The payload's root pid (its session and group) once started; None before."""
        with self._lock:
            return self._payload.pid if self._payload is not None else None

    def usage(self) -> tuple[float, int]:
        """CPU seconds and resident bytes of the payload's process tree, for heartbeats."""
        with self._lock:
            payload, final = self._payload, self._final_usage
        if final is not None:
            return final
        if payload is None:
            return 0.0, 0
        sample = payload.sample()
        return sample.cpu_s, sample.rss_bytes

    def run(self) -> JobOutcome:
        """Run the job to the end; blocks; failures are returned, not raised."""
        try:
            self._timed("stage_in", self._stage_in)
        except _Abort as abort:
            return self._outcome(abort.verdict, None, None)
        result: Optional[RunResult] = None
        try:
            result = self._execute()
            verdict = judge(result, self._limit_hit.minor_status if self._limit_hit else "")
        except _Abort as abort:
            verdict = abort.verdict
        return self._stage_out(verdict, result)

    def _timed(self, phase: str, step: Callable[[], None]) -> None:
        started_s = time.monotonic()
        try:
            step()
        finally:
            self._timings_s[phase] = time.monotonic() - started_s

    def _check_kill(self) -> None:
        if self._kill_requested.is_set():
            minor = MinorStatus.KILLED.with_detail(self._kill_reason)
            raise _Abort(Verdict(JobStatus.KILLED, minor))

    # -- stage in

    def _stage_in(self) -> None:
        self._check_kill()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.workdir, 0o700)  # another job (another uid) may not look in
            for sha256 in self.assignment.input_sandboxes:
                self._check_kill()
                fd, name = tempfile.mkstemp(prefix=".gridpilot-input-", dir=self.workdir)
                os.close(fd)
                try:
                    self._fetch(sha256.lower(), Path(name))
                finally:
                    Path(name).unlink(missing_ok=True)
            if self._payload_user is not None:
                hand_over(self.workdir, self._payload_user)
        except CAUGHT[Step.WORKDIR] as exc:  # _fetch turns its own errors into verdicts
            logger.error("job %d: work dir %s: %s", self.assignment.job_id, self.workdir, exc)
            raise _blamed(Step.WORKDIR, exc) from exc

    def _fetch(self, sha256: str, archive: Path) -> None:
        job_id = self.assignment.job_id
        try:
            # The transport hashes the bytes as it writes them (SandboxTransport).
            self._transport.download_sandbox(sha256, archive)
        except CAUGHT[Step.DOWNLOAD] as exc:  # boundary: the transport is the pilot's code
            logger.error("job %d: input sandbox %s download failed: %s", job_id, sha256, exc)
            raise _blamed(Step.DOWNLOAD, exc) from exc
        try:
            unpack(archive, self.workdir, limits=self._config.sandbox_limits)
        except CAUGHT[Step.UNPACK] as exc:
            logger.error("job %d: input sandbox %s: %s", job_id, sha256, exc)
            raise _blamed(Step.UNPACK, exc) from exc

    # -- payload

    def _execute(self) -> RunResult:
        started_s = time.monotonic()
        try:
            choice = self._runtime()
            spec = self._spec(choice.image)
            self._check_kill()
            self._notify(self._on_running)
            self._check_kill()  # the pilot refuses to start a job whose Running was refused
            payload = self._start(choice.runtime, spec)
        finally:
            self._timings_s["setup"] = time.monotonic() - started_s
        with self._lock:
            self._payload = payload
        self._notify(self._on_payload_started)
        watchdog = Watchdog.for_job(payload, self.assignment, spec, self._config.watchdog)
        try:
            result = self._supervise(payload, watchdog)
        finally:
            watchdog.close()
        with self._lock:
            self._final_usage = (result.cpu_s, 0)
        self._timings_s["payload"] = result.wall_s
        return result

    def _runtime(self) -> Choice:
        job, config = self.assignment, self._config
        try:
            choice = choose_runtime(
                job.container,
                job_wants_gpu(job),
                config.containers,
                config.allow_plain,
                protected=(str(self.workdir.parent),),
                gpu_devices=len(self.allocation.gpus),
            )
        except CAUGHT[Step.RUNTIME] as exc:
            raise _blamed(Step.RUNTIME, exc) from exc
        self._runtime_name = choice.runtime.name
        return choice

    def _spec(self, image: str = "") -> RunSpec:
        job = self.assignment
        # In a container the node's PATH and work-dir path mean nothing.
        passthrough = [n for n in self._config.env_passthrough if not (image and n == "PATH")]
        env = {n: os.environ[n] for n in passthrough if n in os.environ}
        env.setdefault("PATH", CONTAINER_PATH if image else DEFAULT_PATH)
        workdir = CONTAINER_WORKDIR if image else str(self.workdir)
        env.update(_user_env(job.description))
        cores = core_env(job.cores)
        for name, value in cores.items():
            env.setdefault(name, value)
        env.update(gpu_env(self.allocation.gpus))
        env.update(
            HOME=workdir,
            PWD=workdir,
            GRIDPILOT_JOB_ID=str(job.job_id),
            GRIDPILOT_WORKDIR=workdir,
            GRIDPILOT_CORES=cores["GRIDPILOT_CORES"],
        )
        return RunSpec(
            argv=[job.executable, *job.arguments],
            cwd=self.workdir,
            env=env,
            stdout_path=_work_file(self.workdir, job.stdout),
            stderr_path=_work_file(self.workdir, job.stderr),
            cores=max(1, job.cores),
            image=image,
            gpu=job_wants_gpu(job),
            network=job_network(job, self._config.containers),
            user=self._payload_user,
            gpus=self.allocation.gpus,
            cpus=self.allocation.cpus,
        )

    def _notify(self, callback: Optional[Callable[[], None]]) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:  # boundary: the pilot's callback must not stop the job
            logger.exception("job %d: pilot callback failed", self.assignment.job_id)

    def _start(self, runtime: ContainerRuntime, spec: RunSpec) -> RunningPayload:
        try:
            with thread_affinity(spec.cpus):
                return runtime.start(spec)
        except CAUGHT[Step.START] as exc:
            raise _blamed(Step.START, exc) from exc

    def _supervise(self, payload: RunningPayload, watchdog: Watchdog) -> RunResult:
        killed = False
        lasting = self._on_payload_lasting
        while True:
            # Wait before the first sample: a payload that ends within the first poll never
            # pays for the watchdog's process-tree scans (bench/throughput.py).
            if payload.wait(timeout_s=SUPERVISE_POLL_S) is not None:
                self._limit_hit = self._limit_hit or watchdog.after_exit()
                return payload.finish(self._config.kill_grace_s)
            if lasting is not None:
                self._notify(lasting)
                lasting = None
            if not killed and self._kill_requested.is_set():
                payload.kill_tree(self._kill_reason, self._config.kill_grace_s)
                killed = True
            elif not killed:
                self._limit_hit = watchdog.poll()
                if self._limit_hit is not None:
                    payload.kill_tree(self._limit_hit.minor_status, self._config.kill_grace_s)
                    killed = True

    # -- stage out

    def _stage_out(self, verdict: Verdict, result: Optional[RunResult]) -> JobOutcome:
        started_s = time.monotonic()
        packed: Optional[PackResult] = None
        if self.assignment.output_sandbox:
            packed, verdict = self._collect_output(verdict)
        self._timings_s["stage_out"] = time.monotonic() - started_s
        return self._outcome(verdict, result, packed)

    def _collect_output(self, verdict: Verdict) -> tuple[Optional[PackResult], Verdict]:
        job = self.assignment
        first = [p for p in job.output_sandbox if p in (job.stdout, job.stderr)]
        patterns = first + [p for p in job.output_sandbox if p not in first]
        archive = self.workdir / f".gridpilot-output-{job.job_id}.tar.gz"
        limits = self._config.sandbox_limits
        try:
            packed = pack(
                self.workdir,
                patterns,
                archive,
                max_bytes=self._config.max_output_sandbox_bytes,
                scan_limits=ScanLimits(limits.max_depth, limits.max_scan_entries),
            )
        except (OSError, SandboxError) as exc:
            logger.error("job %d: packing the output sandbox failed: %s", job.job_id, exc)
            return None, verdict.stage_out_failed(MinorStatus.OUTPUT_PACK_FAILED)
        delivered = "yes"
        try:
            delivered = self._upload(packed) if packed.included else "yes"
            if delivered == "no":
                return None, verdict.stage_out_failed(MinorStatus.OUTPUT_UPLOAD_FAILED)
        finally:
            if delivered != "later":
                archive.unlink(missing_ok=True)
        if delivered == "later":
            self._output_pending = archive
        if packed.refused:
            minor = MinorStatus.OUTPUT_TREE_TOO_LARGE.with_detail(packed.refused_summary())
            verdict = verdict.output_refused(minor)
        if packed.left_out and verdict.status == JobStatus.DONE:
            minor = MinorStatus.OUTPUT_OVER_LIMIT.with_detail(packed.left_out_summary())
            verdict = dataclasses.replace(verdict, minor_status=minor)
        return packed, verdict

    def _upload(self, packed: PackResult) -> str:
        """``yes``; ``no`` (failed for good); ``later``: the other side could not be reached
        (the transport retried on its own), so the archive is kept for the pilot to send."""
        attempts = 1 + max(0, self._config.upload_retries)
        delay_s = self._config.upload_backoff_s
        for attempt in range(1, attempts + 1):
            try:
                self._transport.upload_sandbox(packed.path, packed.sha256)
                return "yes"
            except TransportUnreachable as exc:
                logger.warning("job %d: output sandbox kept to send later: %s", self._id, exc)
                return "later"
            except Exception:  # boundary: the transport is the pilot's code
                logger.warning(
                    "job %d: output sandbox upload %d/%d failed",
                    self.assignment.job_id,
                    attempt,
                    attempts,
                    exc_info=True,
                )
            if attempt < attempts:
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, MAX_UPLOAD_BACKOFF_S)
        return "no"

    def _broken_runtime(self, verdict: Verdict) -> str:
        failed = verdict.minor_status.startswith(MinorStatus.CONTAINER_RUNTIME_FAILED.value)
        return self._runtime_name if failed else ""

    def _outcome(
        self, verdict: Verdict, result: Optional[RunResult], packed: Optional[PackResult]
    ) -> JobOutcome:
        outcome = JobOutcome(
            status=verdict.status,
            minor_status=verdict.minor_status,
            application_status=verdict.application_status,
            exit_code=verdict.exit_code,
            output_sandbox=packed.sha256 if packed is not None and packed.included else "",
            timings_s=dict(self._timings_s),
            cpu_s=result.cpu_s if result is not None else 0.0,
            max_rss_bytes=result.max_rss_bytes if result is not None else 0,
            infrastructure_error=verdict.infrastructure_error,
            output_missing=list(packed.missing) if packed is not None else [],
            output_left_out=list(packed.left_out) if packed is not None else [],
            broken_runtime=self._broken_runtime(verdict),
            output_pending=str(self._output_pending or ""),
        )
        logger.info(
            "job %d: %s (%s) %s",
            self.assignment.job_id,
            outcome.status.value,
            outcome.minor_status,
            outcome.application_status,
        )
        return outcome


__all__ = [
    "RUNTIMES",
    "ContainerSettings",
    "JobOutcome",
    "JobRun",
    "MinorStatus",
    "SandboxTransport",
    "WrapperConfig",
]
