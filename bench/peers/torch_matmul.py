"""fp32 matrix-product throughput of PyTorch eager on the shapes of bench/matmul (same output format)."""
import json
import sys
import time

import torch

SHAPES = [(2048, 2048, 2048), (4096, 256, 768), (4096, 256, 8192), (4096, 768, 256)]
MIN_SECONDS = 2.0


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    torch.manual_seed(0)
    for m, k, n in SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        checksum = float((a @ b)[0, 0])
        started, reps = time.perf_counter(), 0
        while reps < 3 or time.perf_counter() - started < MIN_SECONDS:
            checksum += float((a @ b)[0, 0])
            reps += 1
        seconds = (time.perf_counter() - started) / reps
        print(json.dumps({"m": m, "k": k, "n": n, "gflops": 2 * m * k * n / seconds / 1e9,
                          "seconds": seconds, "checksum": checksum}))


if __name__ == "__main__":
    main()
