"""The command line. `python run.py --help`; everything it does lives in `experiments`."""

from __future__ import annotations

import argparse
import sys

DEFAULT = "digits_mlp"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and status 2, like every other usage error
        raise SystemExit(_usage(f"{message}; see `python run.py --help`"))


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = _Parser(
        prog="run.py",
        description="Run a dl experiment and compare with the paper.",
        epilog="Override any config field with --config.FIELD=VALUE. `run.py all` writes REPORT.md.",
    )
    p.add_argument(
        "name", nargs="?", default=None, help=f"experiment name, or 'all' (default: {DEFAULT})"
    )
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--scale", default="quick", help="smoke | quick | full (default quick)")
    p.add_argument("--workdir", default=None, help="output folder (default runs/NAME/SCALE)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's)")
    p.add_argument("--data-dir", default=None, help="where datasets are looked for")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    args, rest = p.parse_known_args(argv)
    overrides = []
    for item in rest:
        if not item.startswith("--config."):
            raise SystemExit(_usage(f"unrecognized argument {item!r}; see `python run.py --help`"))
        overrides.append(item[len("--config.") :])
    return args, overrides


def _usage(message: str) -> int:
    print(f"run.py: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse(sys.argv[1:] if argv is None else argv)
    from experiments import EXPERIMENTS
    from experiments._runner import UsageError, list_lines, run_all, run_experiment

    if args.list:
        print("\n".join(list_lines(EXPERIMENTS)))
        return 0
    try:
        if args.name == "all":
            results = run_all(
                EXPERIMENTS,
                scale=args.scale,
                workdir=args.workdir or "runs",
                seed=args.seed,
                data_dir=args.data_dir,
            )
            print(
                f"wrote REPORT.md ({sum(bool(r.get('passed')) for r in results)} of "
                f"{len(results)} experiments pass)"
            )
            return 0
        name = args.name or DEFAULT
        if args.name is None:
            print(
                f"running the default experiment {DEFAULT!r} ({args.scale}); "
                f"`python run.py --list` shows the others"
            )
        r = run_experiment(
            name,
            EXPERIMENTS,
            scale=args.scale,
            workdir=args.workdir,
            seed=args.seed,
            data_dir=args.data_dir,
            resume=args.resume,
            overrides=overrides,
        )
    except UsageError as e:
        return _usage(str(e))
    print(f"\n{name} ({args.scale}) -> {r['workdir']}")
    for b in r["bars"]:
        print(
            f"  {'PASS' if b['passed'] else 'FAIL'}  {b['name']}: ours {b['ours']:.4g} "
            f"(bar {b['target']}; paper {b['paper'] or '-'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
