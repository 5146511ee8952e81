using System.Reflection;
using Microsoft.ML.Hazy.Gpu.Kernels;

namespace Microsoft.ML.Hazy.Gpu.Runtime;

/// <summary>A memory range a kernel reads or writes: a device (or, on the CPU accelerator, host) pointer and its element count.</summary>
internal readonly record struct DeviceView(IntPtr Pointer, long Length);

/// <summary>One explicitly grouped kernel: its C# method (what ILGPU compiles) and the name it is looked up by.</summary>
internal sealed class KernelEntry
{
    private KernelEntry(string name, MethodInfo method)
    {
        Name = name;
        Method = method;
    }

    /// <summary>A stable name (also the key of compiled PTX files).</summary>
    public string Name { get; }

    /// <summary>The static C# kernel method.</summary>
    public MethodInfo Method { get; }

    /// <summary>The kernel's parameter types, in order.</summary>
    public Type[] ParameterTypes => Method.GetParameters().Select(p => p.ParameterType).ToArray();

    public static KernelEntry AttentionForward { get; } = Of(typeof(AttentionKernels), nameof(AttentionKernels.Forward));

    public static KernelEntry AttentionDelta { get; } = Of(typeof(AttentionKernels), nameof(AttentionKernels.Delta));

    public static KernelEntry AttentionBackwardQuery { get; } = Of(typeof(AttentionKernels), nameof(AttentionKernels.BackwardQuery));

    public static KernelEntry AttentionBackwardKey { get; } = Of(typeof(AttentionKernels), nameof(AttentionKernels.BackwardKey));

    public static KernelEntry S4DForward { get; } = Of(typeof(S4DKernels), nameof(S4DKernels.Forward));

    public static KernelEntry S4DBackward { get; } = Of(typeof(S4DKernels), nameof(S4DKernels.Backward));

    public static KernelEntry MonarchForward { get; } = Of(typeof(MonarchKernels), nameof(MonarchKernels.Forward));

    /// <summary>Every entry point of the assembly.</summary>
    public static IReadOnlyList<KernelEntry> All { get; } =
        [AttentionForward, AttentionDelta, AttentionBackwardQuery, AttentionBackwardKey, S4DForward, S4DBackward, MonarchForward];

    private static KernelEntry Of(Type type, string method) =>
        new($"{type.Name}_{method}", type.GetMethod(method, BindingFlags.Public | BindingFlags.Static)!);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>Where kernels run: ILGPU's CPU accelerator over host memory (tests) or the CUDA driver over libtorch's device memory.</summary>
internal interface IKernelBackend
{
    /// <summary>A short description for logs.</summary>
    string Name { get; }

    /// <summary>
    /// Launches <paramref name="entry"/> on <paramref name="groups"/> groups of <paramref name="groupSize"/> threads,
    /// in order with earlier launches on the same device. Arguments are <see cref="DeviceView"/>s for the kernel's
    /// <c>ArrayView</c> parameters and the parameter structs themselves, in the kernel's order.
    /// </summary>
    void Launch(KernelEntry entry, int deviceIndex, int groups, int groupSize, params object[] arguments);
}
