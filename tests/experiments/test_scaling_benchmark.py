"""The scaling benchmark's count of the all-reduces in compiled HLO text (what its table reports).

The benchmark itself times steps and is run by hand (docs/performance.md, "Scaling over
devices"); here only its parsing, on HLO lines of the forms XLA prints: a single array, a tuple
of arrays combined into one op, and an asynchronous start (GPU).
"""

from experiments.benchmarks import scaling

HLO = """
  %all-reduce.1 = f32[128]{0} all-reduce(f32[128]{0} %a), channel_id=1, to_apply=%add
  %all-reduce.2 = (f32[2,1024]{1,0}, f32[4,4,2,32]{3,2,1,0}, bf16[8]{0}) all-reduce(%b, %c, %d)
  %all-reduce-start.3 = f32[16384]{0} all-reduce-start(f32[16384]{0} %e), channel_id=3
  %all-reduce-done.3 = f32[16384]{0} all-reduce-done(f32[16384]{0} %all-reduce-start.3)
  %fusion.4 = f32[128]{0} fusion(f32[128]{0} %all-reduce.1), kind=kLoop
"""


def test_all_reduces_are_counted_by_op_array_and_byte():
    found = scaling._all_reduces(HLO)
    tuple_bytes = 4 * 2 * 1024 + 4 * 4 * 4 * 2 * 32 + 2 * 8
    assert found["ops"] == 3
    assert found["arrays"] == 5
    assert found["bytes"] == 4 * 128 + tuple_bytes + 4 * 16384
    # Under 64 kB: the first two; the 64 kB one is not small.
    assert found["small_ops"] == 2
    assert found["small_bytes"] == 4 * 128 + tuple_bytes


def test_no_all_reduce_on_one_device():
    assert scaling._all_reduces("%dot.1 = f32[4,4]{1,0} dot(%a, %b)")["ops"] == 0
