using Microsoft.ML.Hazy.Gpu.Cuda;
using Microsoft.ML.Hazy.Gpu.Runtime;
using Microsoft.ML.Hazy.Kernels;
using TorchSharp;

namespace Microsoft.ML.Hazy.Gpu;

/// <summary>
/// Turns on Hazy's CUDA kernels (FlashAttention, the S4D Vandermonde product, the fused Monarch product) for float32
/// CUDA tensors. Call <see cref="Enable"/> once at start-up, with a CUDA build of TorchSharp referenced (on Windows,
/// <c>TorchSharp-cuda-windows</c>); without an NVIDIA driver it registers nothing, says why, and every layer keeps
/// running where it did (the CPU kernels on CPU tensors, libtorch elsewhere).
/// </summary>
public static class HazyGpu
{
    private static readonly object Gate = new();
    private static HazyGpuStatus? _status;

    /// <summary>
    /// Loads the CUDA driver (<c>nvcuda.dll</c> on Windows, <c>libcuda.so.1</c> on Linux) and registers the kernels
    /// with Hazy's kernel registry. Idempotent: later calls return the first call's status.
    /// </summary>
    /// <returns>Whether the kernels are enabled, and why not when they are not.</returns>
    public static HazyGpuStatus Enable()
    {
        lock (Gate)
        {
            if (_status is not null)
                return _status;
            var driver = CudaDriver.TryLoad(out var reason);
            if (driver is null)
                return _status = new HazyGpuStatus(false, reason + " Hazy kernels stay on the CPU and libtorch.");
            KernelRegistry.Register(new GpuKernels(new CudaBackend(driver), DeviceType.CUDA));
            return _status = new HazyGpuStatus(true, reason + " Hazy's CUDA kernels are registered for float32 CUDA tensors.");
        }
    }

    /// <summary>The status of the first <see cref="Enable"/> call, or null before it.</summary>
    public static HazyGpuStatus? Status => _status;
}

/// <summary>The outcome of <see cref="HazyGpu.Enable"/>.</summary>
/// <param name="Enabled">Whether the CUDA kernels are registered.</param>
/// <param name="Reason">What was found: the driver and device count, or why nothing was registered.</param>
public sealed record HazyGpuStatus(bool Enabled, string Reason);
