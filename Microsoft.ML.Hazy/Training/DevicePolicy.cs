using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// ML.NET's device policy (<see cref="MLContext.GpuDeviceId"/>, <see cref="MLContext.FallbackToCpu"/>),
/// honouring the numeric device id that ML.NET's own TorchSharp trainers ignore.
/// </summary>
internal static class DevicePolicy
{
    public static Device Resolve(int? gpuDeviceId, bool fallbackToCpu, Action<string>? warn = null)
    {
        if (TorchRuntime.EnsureInitialized() is string setupProblem)
            warn?.Invoke($"libtorch's oneDNN convolutions could not be switched off ({setupProblem}); convolution gradients may be wrong on some processors.");
        if (gpuDeviceId is not int id)
            return CPU;
        if (id < 0)
            throw new ArgumentOutOfRangeException(nameof(gpuDeviceId), id, "MLContext.GpuDeviceId must be null or a non-negative device index.");
        bool available = cuda.is_available();
        int count = available ? cuda.device_count() : 0;
        if (id < count)
            return new Device(DeviceType.CUDA, id);
        string why = available
            ? $"MLContext.GpuDeviceId is {id} but only {count} CUDA device(s) exist"
            : $"MLContext.GpuDeviceId is {id} but CUDA is not available (no GPU, or the TorchSharp-cpu runtime package is in use)";
        if (!fallbackToCpu)
            throw new InvalidOperationException(why + " and MLContext.FallbackToCpu is false.");
        warn?.Invoke(why + "; falling back to the CPU because MLContext.FallbackToCpu is true.");
        return CPU;
    }
}
