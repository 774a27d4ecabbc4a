"""benchmarks/_cli.py: the options the benchmark scripts share."""
from __future__ import annotations

import pytest
from _bench import load_benchmark  # tests/


def test_bench_parser_gives_the_shared_options_and_the_scripts_result_file(capsys):
    cli = load_benchmark("_cli")
    p = cli.bench_parser("First line.\n\nMore text.", "/anywhere/benchmarks/some_script.py")
    args = p.parse_args([])
    assert (args.profile, args.threads, args.out) == ("default", 2, cli.RESULTS / "some_script.csv")
    assert cli.RESULTS.name == "results" and cli.RESULTS.parent.name == "benchmarks"
    args = p.parse_args(["--profile", "ci", "--threads", "1", "--out", "x.csv"])
    assert (args.profile, args.threads, str(args.out)) == ("ci", 1, "x.csv")
    assert cli.bench_parser("Doc.", "a/b/report_x.py", suffix=".txt", threads=1).parse_args([]).out.name == "report_x.txt"
    p.print_help()
    assert "First line." in capsys.readouterr().out
    with pytest.raises(SystemExit):
        p.parse_args(["--threads", "two"])
    assert "--threads: invalid int value" in capsys.readouterr().err


def test_parse_args_applies_the_thread_count():
    import torch

    cli = load_benchmark("_cli")
    before = torch.get_num_threads()
    try:
        args = cli.parse_args(cli.bench_parser("Doc.", "x.py"), ["--threads", "1", "--profile", "ci"])
        assert (args.threads, args.profile, torch.get_num_threads()) == (1, "ci", 1)
    finally:
        torch.set_num_threads(before)
