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


def test_rows_prior_and_the_table_made_with_it():
    """rows_prior: a CSV's own prior_checkpoint, else the prior of every run before that column;
    table_file: figures/ for the default profile's prior, the frozen copy for the previous one,
    an error for a prior no table was made with."""
    from paperlib.config import load_profile

    cli = load_benchmark("_cli")
    assert cli.rows_prior([{"prior_checkpoint": "checkpoints/x"}]) == "checkpoints/x"
    assert cli.rows_prior([{"case": "a"}]) == cli.rows_prior([{"prior_checkpoint": None}]) == cli.PRIOR_BEFORE_RECORDED
    current = load_profile("default").real_mri.checkpoint
    assert current != cli.PRIOR_BEFORE_RECORDED
    assert cli.table_file(current) == cli.RESULTS.parents[1] / "figures" / "tab_real_mri_cases.csv"
    frozen = cli.table_file(cli.PRIOR_BEFORE_RECORDED, "tab_real_mri_margin.csv")
    assert frozen.is_file() and frozen.parent.parent == cli.RESULTS
    with pytest.raises(FileNotFoundError, match="checkpoints/nowhere: no real-scan table made with it"):
        cli.table_file("checkpoints/nowhere")
