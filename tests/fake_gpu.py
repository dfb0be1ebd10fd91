"""A fake device at the process boundary: the trial child dies the way a GPU reports a bad index or label."""

import sys


def device_assert(task_path: str, result_path: str) -> None:
    """The child reaches the device and CUDA aborts the kernel: all the parent gets is this text."""
    print(
        "../aten/src/ATen/native/cuda/Loss.cu:250: nll_loss_forward_reduce_cuda_kernel_2d: block: [0,0,0], "
        "thread: [5,0,0] Assertion `t >= 0 && t < n_classes` failed.",
        file=sys.stderr,
    )
    raise RuntimeError(
        "CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously "
        "reported at some other API call, so the stacktrace below might be incorrect."
    )
