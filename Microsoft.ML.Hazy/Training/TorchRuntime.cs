using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// Process-wide libtorch settings that every Hazy path running TorchSharp relies on, applied once before the first
/// network is built or differentiated.
/// </summary>
/// <remarks>
/// libtorch 2.10's oneDNN (MKL-DNN) convolution computes wrong input gradients on some x64 processors (seen on AMD
/// EPYC with AVX-512; also with oneDNN capped to AVX2): for a batch of more than one row, most of ∂L/∂x holds
/// values read from uninitialised memory, so attributions and the gradients of all but the first convolution
/// come out wrong, differ between runs and are sometimes NaN. The forward pass is right. libtorch's own
/// im2col + GEMM convolution is right everywhere, so oneDNN is switched off for the whole process: one
/// convolution algorithm on every machine. TorchSharp exposes no switch for it, so this calls
/// <c>at::globalContext().setUserEnabledMkldnn(false)</c> in <c>libtorch_cpu</c> directly.
/// </remarks>
internal static class TorchRuntime
{
    private static readonly Lazy<string?> Setup = new(Apply, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Applies the settings once; null when applied, else why they could not be.</summary>
    public static string? EnsureInitialized() => Setup.Value;

    /// <summary>Whether libtorch currently uses oneDNN for convolutions; null when that cannot be read.</summary>
    public static bool? OneDnnEnabled()
    {
        if (!TryGetContext(out var context, out _) || !TryExport("_ZNK2at7Context17userEnabledMkldnnEv", out var get, out _))
            return null;
        unsafe
        {
            return ((delegate* unmanaged<IntPtr, byte>)get)(context) != 0;
        }
    }

    private static string? Apply()
    {
        if (!TryGetContext(out var context, out var why))
            return why;
        if (!TryExport("_ZN2at7Context20setUserEnabledMkldnnEb", out var set, out why))
            return why;
        unsafe
        {
            ((delegate* unmanaged<IntPtr, byte, void>)set)(context, 0);
        }
        return null;
    }

    private static bool TryGetContext(out IntPtr context, out string? why)
    {
        context = IntPtr.Zero;
        if (!TryExport("_ZN2at13globalContextEv", out var global, out why))
            return false;
        unsafe
        {
            context = ((delegate* unmanaged<IntPtr>)global)();
        }
        return context != IntPtr.Zero;
    }

    private static bool TryExport(string symbol, out IntPtr address, out string? why)
    {
        address = IntPtr.Zero;
        why = null;
        if (!OperatingSystem.IsLinux())
        {
            why = "libtorch's oneDNN switch is only reached on Linux (C++ symbol names differ elsewhere).";
            return false;
        }
        // Loading libtorch through TorchSharp first makes libtorch_cpu resolvable by its soname.
        using (var _ = zeros(1))
        {
        }
        if (!NativeLibrary.TryLoad("libtorch_cpu.so", out var library))
        {
            why = "libtorch_cpu.so is not loaded.";
            return false;
        }
        if (!NativeLibrary.TryGetExport(library, symbol, out address))
        {
            why = $"libtorch_cpu.so does not export {symbol}.";
            return false;
        }
        return true;
    }
}
