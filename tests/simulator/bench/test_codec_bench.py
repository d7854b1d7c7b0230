"""`rankcast bench codec` on one 1024 × 1024 layer: it measures the payload it built and reports it."""

from __future__ import annotations

import json

from simulator.bench.codec import run_codec_bench


def test_codec_bench_measures_a_real_payload_and_writes_its_figures(tmp_path, capsys):
    assert run_codec_bench(parameters=[1024 * 1024, 2 * 1024 * 1024], rank=2, repeats=1, out=tmp_path) == 0
    document = json.loads((tmp_path / "codec_bench.json").read_text())
    assert [r["layers"] for r in document["results"]] == [1, 2] and document["machine"]
    report = document["results"][0]
    assert report["layers"] == 1 and report["rank"] == 2
    assert 0 < report["payload_bytes"] < report["decompressed_bytes"] < report["model_bytes"]
    for timing in ("encode_s", "decode_s", "zstd_decompress_s", "apply_s"):
        assert report[timing] > 0
    assert report["decode_over_zstd"] == report["decode_s"] / report["zstd_decompress_s"]
    assert "plain zstd decompression" in capsys.readouterr().out
