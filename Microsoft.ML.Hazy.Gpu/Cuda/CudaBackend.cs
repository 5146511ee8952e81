using System.Collections.Concurrent;
using Microsoft.ML.Hazy.Gpu.Runtime;

namespace Microsoft.ML.Hazy.Gpu.Cuda;

/// <summary>Runs the kernels on CUDA devices: PTX from <see cref="PtxCompiler"/>, loaded once per device in its primary context, launched on stream 0.</summary>
internal sealed class CudaBackend : IKernelBackend
{
    private readonly ConcurrentDictionary<(KernelEntry, int), IntPtr> _functions = new();
    private readonly object _gate = new();

    /// <summary>Creates a backend over a loaded driver.</summary>
    public CudaBackend(CudaDriver driver)
    {
        Driver = driver;
    }

    /// <summary>The driver.</summary>
    public CudaDriver Driver { get; }

    /// <inheritdoc/>
    public string Name => $"CUDA driver ({Driver.DeviceCount} device(s))";

    /// <inheritdoc/>
    public void Launch(KernelEntry entry, int deviceIndex, int groups, int groupSize, params object[] arguments)
    {
        if (groups == 0)
            return;
        Driver.MakeCurrent(deviceIndex);
        var function = _functions.GetOrAdd((entry, deviceIndex), key =>
        {
            lock (_gate)
            {
                var ptx = PtxCompiler.Compile(key.Item1);
                return Driver.GetFunction(Driver.LoadModule(ptx.Assembly), ptx.EntryName);
            }
        });
        Driver.Launch(function, groups, groupSize, ArgumentPacker.Pack(arguments));
    }
}
