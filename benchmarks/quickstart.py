"""The README's offline quickstart as a new user meets it: from nothing to the first answer; prints the times.

A fresh ``git clone`` of the repository, a fresh virtual environment, an empty pip cache, then the
quickstart's two commands: ``pip install -e '.[offline]'`` and ``clinfo ask --llm local --source demo
"<question>"`` with an empty clinfo cache (the demo corpus is indexed on first use). It checks that the
install compiled nothing (no llama-cpp-python, no torch) and that the answer cites a real PMID of the
demo corpus. Target: <= 90 s in all on 2 cores.

    python benchmarks/quickstart.py [--repo .] [--extra offline] [--registry-only]

Packages come from the registry pip is configured with (``--registry-only``: the default index alone,
without this machine's pip config, local wheel folders and extra indexes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTION = "Do preoperative statins reduce atrial fibrillation after coronary artery bypass grafting?"
CITED = "21881325"  # the PubMedQA abstract that answers QUESTION, in the demo corpus


def step(name: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        output = done.stdout[-3000:] + done.stderr[-3000:]
        sys.exit(f"{name} failed ({done.returncode}) after {seconds:.1f} s:\n{output}")
    print(f"{name:<28s} {seconds:6.1f} s", flush=True)
    return seconds, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]), help="repository to clone")
    parser.add_argument("--extra", default="offline", help="the extra the quickstart installs")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--python", default=sys.executable, help="interpreter the venv is made from")
    parser.add_argument("--registry-only", action="store_true", help="ignore this machine's pip config")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (printed)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="clinfo-quickstart-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINFO_", "OPENAI_", "NCBI_", "VIRTUAL_ENV"))}
    env.update(
        PIP_CACHE_DIR=str(work / "pip-cache"),  # empty: every package is downloaded
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        CLINFO_CACHE_DIR=str(work / "clinfo-cache"),  # empty: the demo corpus is indexed on first use
        HF_HUB_OFFLINE="1",  # nothing of the answer may come from the network
    )
    if args.registry_only:
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS="", PIP_EXTRA_INDEX_URL="", PIP_CONSTRAINT="")
    clone, venv = work / "clinfo", work / "venv"
    bin_dir = venv / "bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    load = os.getloadavg()
    print(f"working in {work}; {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    try:
        total = 0.0
        seconds, _ = step("git clone", ["git", "clone", "--quiet", args.repo, str(clone)], env)
        total += seconds
        seconds, _ = step("python -m venv", [args.python, "-m", "venv", str(venv)], env)
        total += seconds
        install = [str(bin_dir / "pip"), "install", "--progress-bar", "off", "-e", f".[{args.extra}]"]
        seconds, log = step(f"pip install -e '.[{args.extra}]'", install, env, cwd=clone)
        total += seconds
        built = sorted(set(re.findall(r"Building wheel for (\S+)", log)) - {"clinfo"})
        downloaded = len(re.findall(r"^\s*Downloading ", log, flags=re.M))
        ask = [str(bin_dir / "clinfo"), "ask", "--llm", "local", "--source", "demo", args.question]
        seconds, answer = step("clinfo ask (first answer)", ask, env, cwd=clone)
        total += seconds
        print(f"{'total':<28s} {total:6.1f} s  (target <= 90 s)")
        print(f"packages downloaded: {downloaded}; compiled from source: {', '.join(built) or 'none'}")
        pip_list = [str(bin_dir / "pip"), "list", "--format=freeze"]
        listed = subprocess.run(pip_list, env=env, capture_output=True, text=True)
        heavy = [p for p in ("llama_cpp_python", "llama-cpp-python", "torch") if f"\n{p}==" in f"\n{listed.stdout}"]
        print(f"llama-cpp-python / torch installed: {', '.join(heavy) or 'neither'}")
        print(f"answer cites PMID {CITED}: {'yes' if CITED in answer else 'NO'}")
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        if CITED not in answer or heavy:
            sys.exit("the quickstart did not give the expected answer, or installed a compiled model")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
