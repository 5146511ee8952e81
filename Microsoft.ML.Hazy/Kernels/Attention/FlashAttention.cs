using System.Runtime.InteropServices;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Kernels.Attention;

/// <summary>
/// FlashAttention on TorchSharp tensors: q [B, H, Lq, d], k and v [B, H, Lk, d]. The kernel comes from the
/// <see cref="KernelRegistry"/> for the tensors' device and element type: on CPU float32 tensors Hazy's
/// <see cref="FlashAttentionKernel"/> runs directly on the tensors' memory inside a custom autograd function; elsewhere
/// a registered provider (the GPU assembly) or the libtorch reference (<see cref="ReferenceAttention"/>, which calls
/// libtorch's <c>scaled_dot_product_attention</c> off the CPU when there is no dropout). Second-order gradients
/// (a backward with <c>create_graph: true</c>) are exact on every path.
/// </summary>
public static class FlashAttention
{
    /// <summary>Attention output O = softmax(τQKᵀ + mask)V, differentiable with respect to q, k and v (to any order).</summary>
    public static Tensor Apply(Tensor q, Tensor k, Tensor v, FlashAttentionOptions? options = null) =>
        Apply(q, k, v, options, kernels: null);

    /// <summary>The output and the log-sum-exp of each score row ([B, H, Lq]; not differentiable).</summary>
    public static (Tensor Output, Tensor LogSumExp) ApplyWithLogSumExp(Tensor q, Tensor k, Tensor v, FlashAttentionOptions? options = null) =>
        ApplyWithLogSumExp(q, k, v, options, kernels: null);

    /// <summary>Attention through <paramref name="kernels"/> (null: the registry's choice; one that cannot take these tensors: the reference).</summary>
    internal static Tensor Apply(Tensor q, Tensor k, Tensor v, FlashAttentionOptions? options, IAttentionKernels? kernels)
    {
        ReferenceAttention.ShapeOf(q, k, v);
        return KernelRegistry.Resolve(kernels, q.device_type, q.dtype).Attention(q, k, v, options ?? new FlashAttentionOptions(), withLogSumExp: false).Output;
    }

    /// <summary>The output and log-sum-exp through <paramref name="kernels"/> (as in <see cref="Apply(Tensor, Tensor, Tensor, FlashAttentionOptions?, IAttentionKernels?)"/>).</summary>
    internal static (Tensor Output, Tensor LogSumExp) ApplyWithLogSumExp(Tensor q, Tensor k, Tensor v, FlashAttentionOptions? options, IAttentionKernels? kernels)
    {
        ReferenceAttention.ShapeOf(q, k, v);
        var (o, lse) = KernelRegistry.Resolve(kernels, q.device_type, q.dtype).Attention(q, k, v, options ?? new FlashAttentionOptions(), withLogSumExp: true);
        return (o, lse!);
    }

    /// <summary>The shape of q, k and v for the CPU kernel: float32 CPU tensors of matching shapes.</summary>
    internal static AttentionShape ShapeOf(Tensor q, Tensor k, Tensor v)
    {
        foreach (var (t, name) in new[] { (q, "q"), (k, "k"), (v, "v") })
        {
            if (t.dtype != ScalarType.Float32)
                throw new ArgumentException($"The CPU FlashAttention kernel takes float32 tensors; '{name}' is {t.dtype}.", name);
            if (t.device_type != DeviceType.CPU)
                throw new ArgumentException($"'{name}' is on {t.device}; the CPU FlashAttention kernel takes CPU tensors.", name);
        }
        return ReferenceAttention.ShapeOf(q, k, v);
    }

    internal static bool Visible(AttentionShape s, FlashAttentionOptions options, int b, int i, int j)
    {
        if (options.KeyLengths is { } lens && j >= lens[b])
            return false;
        if (options.Causal && j > i + s.KeyLength - s.QueryLength)
            return false;
        return options.BlockMask is not { } m || m[i / m.QueryBlockSize, j / m.KeyBlockSize];
    }
}

/// <summary>
/// The custom autograd function of the CPU kernel: forward saves q, k, v (the caller's tensors, with their history),
/// O and the log-sum-exp; backward is Algorithm 4. When libtorch runs the backward with <c>create_graph: true</c> it
/// enables grad mode inside it (and only then); the backward then computes the same gradients with the differentiable
/// formulas of <see cref="ReferenceAttention.Backward"/>, so a second backward through them is exact.
/// </summary>
internal sealed unsafe class FlashAttentionFunction : autograd.MultiTensorFunction<FlashAttentionFunction>
{
    public override string Name => "FlashAttention";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var options = (FlashAttentionOptions)vars[3];
        Tensor q0 = (Tensor)vars[0], k0 = (Tensor)vars[1], v0 = (Tensor)vars[2];
        using var q = q0.contiguous();
        using var k = k0.contiguous();
        using var v = v0.contiguous();
        var shape = FlashAttention.ShapeOf(q, k, v);
        var o = empty_like(q);
        var lse = empty(new long[] { shape.Batch, shape.Heads, shape.QueryLength }, ScalarType.Float32);
        FlashAttentionKernel.Forward(shape, Data(q), Data(k), Data(v), Data(o), Data(lse), options);
        ctx.save_for_backward([q0, k0, v0, o.detach(), lse.detach()]);
        ctx.save_data("options", options);
        ctx.mark_non_differentiable([lse]);
        return [o, lse];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grad_outputs)
    {
        var saved = ctx.get_saved_variables();
        var options = (FlashAttentionOptions)ctx.get_data("options");
        Tensor q0 = saved[0], k0 = saved[1], v0 = saved[2], o = saved[3], lse = saved[4];
        var shape = FlashAttention.ShapeOf(q0, k0, v0);
        if (is_grad_enabled())
        {
            // create_graph: differentiable formulas of the saved inputs (which keep their history) and of dO.
            var (gq, gk, gv) = ReferenceAttention.Backward(shape, q0, k0, v0, grad_outputs[0], options);
            foreach (var t in saved)
                t.Dispose();
            return [gq, gk, gv, null!];
        }
        using var q = q0.contiguous();
        using var k = k0.contiguous();
        using var v = v0.contiguous();
        using var dO = grad_outputs[0].contiguous();
        var dq = empty_like(q);
        var dk = empty_like(k);
        var dv = empty_like(v);
        FlashAttentionKernel.Backward(shape, Data(q), Data(k), Data(v), Data(o), Data(lse), Data(dO), Data(dq), Data(dk), Data(dv), options);
        foreach (var t in saved)
            t.Dispose();
        return [dq, dk, dv, null!];
    }

    private static float* Data(Tensor t) => (float*)THSTensor_data(t.Handle);

    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);
}

/// <summary>
/// Scaled dot-product attention as a module: (q, k, v) each [B, H, L, d] → [B, H, Lq, d], FlashAttention on the CPU.
/// Dropout applies in training mode only, with a fresh seed on each call from the training run's generator inside a
/// Hazy trainer, else from the torch generator.
/// </summary>
public sealed class FlashAttentionModule : nn.Module<Tensor, Tensor, Tensor, Tensor>, ISeededModule
{
    private readonly FlashAttentionOptions _options;
    private Generator? _generator;

    /// <summary>Creates the module; <paramref name="options"/> are copied.</summary>
    public FlashAttentionModule(FlashAttentionOptions? options = null, string name = "flash_attention") : base(name)
    {
        _options = options?.Clone() ?? new FlashAttentionOptions();
        RegisterComponents();
    }

    Generator? ISeededModule.Generator { get => _generator; set => _generator = value; }

    void ISeededModule.ResetParameters(Generator generator)
    {
    }

    /// <summary>Attention of <paramref name="q"/> over <paramref name="k"/>, <paramref name="v"/>.</summary>
    public override Tensor forward(Tensor q, Tensor k, Tensor v) => forward(q, k, v, null);

    /// <summary>Attention with per-batch key lengths (keys at or past the length are padding).</summary>
    public Tensor forward(Tensor q, Tensor k, Tensor v, int[]? keyLengths)
    {
        var options = _options.Clone();
        if (keyLengths is not null)
            options.KeyLengths = keyLengths;
        if (!training)
            options.DropoutProbability = 0;
        else if (options.DropoutProbability > 0)
        {
            options.DropoutSeed = TrainingRandom.NextSeed(_generator);
        }
        return FlashAttention.Apply(q, k, v, options);
    }
}
