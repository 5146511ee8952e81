using System.Collections.Concurrent;
using System.Linq.Expressions;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace Microsoft.ML.Hazy.Gpu.Runtime;

/// <summary>
/// Runs the kernels on ILGPU's CPU accelerator (a simulator: every thread of a group is an OS thread) directly over host
/// memory (TorchSharp CPU tensors): the same C# kernels the PTX comes from, checked in CI against the CPU implementations.
/// </summary>
internal sealed class CpuAcceleratorBackend : IKernelBackend, IDisposable
{
    private readonly Context _context;
    private readonly CPUAccelerator _accelerator;
    private readonly ConcurrentDictionary<KernelEntry, Delegate> _loaded = new();
    private readonly object _gate = new();

    /// <summary>Creates a simulator with warps of 4 threads and groups of up to 64 threads (the kernels use no warp collectives).</summary>
    public CpuAcceleratorBackend()
    {
        var device = new CPUDevice(4, 16, 1);
        _context = Context.Create(builder => builder.CPU(device));
        _accelerator = device.CreateCPUAccelerator(_context, CPUAcceleratorMode.Parallel);
    }

    /// <inheritdoc/>
    public string Name => "ILGPU CPU accelerator";

    /// <inheritdoc/>
    public void Launch(KernelEntry entry, int deviceIndex, int groups, int groupSize, params object[] arguments)
    {
        var kernel = _loaded.GetOrAdd(entry, Load);
        var types = entry.ParameterTypes;
        if (arguments.Length != types.Length)
            throw new ArgumentException($"Kernel {entry.Name} takes {types.Length} arguments; got {arguments.Length}.");
        var buffers = new List<ExternalBuffer>();
        var values = new object[arguments.Length + 1];
        values[0] = new KernelConfig(groups, groupSize);
        for (int i = 0; i < arguments.Length; i++)
        {
            if (arguments[i] is DeviceView view)
            {
                var element = types[i].GetGenericArguments()[0];
                var buffer = new ExternalBuffer(_accelerator, view.Pointer, Math.Max(view.Length, 1), System.Runtime.InteropServices.Marshal.SizeOf(element));
                buffers.Add(buffer);
                values[i + 1] = Activator.CreateInstance(types[i], buffer, 0L, Math.Max(view.Length, 1))!;
            }
            else
                values[i + 1] = arguments[i];
        }
        lock (_gate)
        {
            kernel.DynamicInvoke(values);
            _accelerator.Synchronize();
        }
        foreach (var buffer in buffers)
            buffer.Dispose();
    }

    private Delegate Load(KernelEntry entry)
    {
        var types = entry.ParameterTypes;
        var action = entry.Method.CreateDelegate(Expression.GetActionType(types));
        var loader = typeof(KernelLoaders).GetMethods(BindingFlags.Public | BindingFlags.Static)
            .Single(m => m.Name == nameof(KernelLoaders.LoadStreamKernel) && m.IsGenericMethodDefinition
                && m.GetGenericArguments().Length == types.Length && m.GetParameters().Length == 2);
        lock (_gate)
            return (Delegate)loader.MakeGenericMethod(types).Invoke(null, [_accelerator, action])!;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _accelerator.Dispose();
        _context.Dispose();
    }

    /// <summary>An ILGPU buffer over memory it does not own (a tensor's storage).</summary>
    private sealed class ExternalBuffer : MemoryBuffer
    {
        public ExternalBuffer(Accelerator accelerator, IntPtr pointer, long length, int elementSize) : base(accelerator, length, elementSize)
        {
            NativePtr = pointer;
        }

        protected override void MemSet(AcceleratorStream stream, byte value, in ArrayView<byte> targetView) => throw new NotSupportedException();

        protected override void CopyFrom(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) => throw new NotSupportedException();

        protected override void CopyTo(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) => throw new NotSupportedException();

        protected override void DisposeAcceleratorObject(bool disposing)
        {
        }
    }
}
