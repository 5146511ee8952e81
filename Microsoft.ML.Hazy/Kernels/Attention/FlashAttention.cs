using System.Runtime.InteropServices;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence.Attention;

/// <summary>
/// FlashAttention on TorchSharp tensors: q [B, H, Lq, d], k and v [B, H, Lk, d]. On CPU float32 tensors it runs
/// <see cref="FlashAttentionKernel"/> directly on the tensors' memory inside a custom autograd function; on other
/// devices it falls back to libtorch's <c>scaled_dot_product_attention</c> with an equivalent mask.
/// </summary>
public static class FlashAttention
{
    /// <summary>Attention output O = softmax(τQKᵀ + mask)V, differentiable with respect to q, k and v.</summary>
    public static Tensor Apply(Tensor q, Tensor k, Tensor v, FlashAttentionOptions? options = null) =>
        ApplyWithLogSumExp(q, k, v, options).Output;

    /// <summary>The output and the log-sum-exp of each score row ([B, H, Lq]; not differentiable). CPU only.</summary>
    public static (Tensor Output, Tensor LogSumExp) ApplyWithLogSumExp(Tensor q, Tensor k, Tensor v, FlashAttentionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        options ??= new FlashAttentionOptions();
        if (q.device_type != DeviceType.CPU)
            return (Fallback(q, k, v, options), empty(0));
        ShapeOf(q, k, v);
        var outputs = FlashAttentionFunction.apply(q, k, v, options.Clone());
        return (outputs[0], outputs[1]);
    }

    internal static AttentionShape ShapeOf(Tensor q, Tensor k, Tensor v)
    {
        foreach (var (t, name) in new[] { (q, "q"), (k, "k"), (v, "v") })
        {
            if (t.dim() != 4)
                throw new ArgumentException($"FlashAttention expects '{name}' of shape [batch, heads, length, headDim]; got [{string.Join(", ", t.shape)}].", name);
            if (t.dtype != ScalarType.Float32)
                throw new ArgumentException($"The CPU FlashAttention kernel takes float32 tensors; '{name}' is {t.dtype}.", name);
            if (t.device_type != DeviceType.CPU)
                throw new ArgumentException($"'{name}' is on {t.device}; q, k and v must be on the same device.", name);
        }
        if (k.shape[0] != q.shape[0] || k.shape[1] != q.shape[1] || k.shape[3] != q.shape[3] || !v.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"Attention shapes do not match: q [{string.Join(", ", q.shape)}], k [{string.Join(", ", k.shape)}], v [{string.Join(", ", v.shape)}]; k and v must be [B, H, Lk, d] with q's B, H and d.");
        return new AttentionShape((int)q.shape[0], (int)q.shape[1], (int)q.shape[2], (int)k.shape[2], (int)q.shape[3]);
    }

    // Non-CPU tensors: libtorch SDPA (whose binding spells is_casual and has no scale: q is pre-scaled) with the same mask.
    private static Tensor Fallback(Tensor q, Tensor k, Tensor v, FlashAttentionOptions options)
    {
        if (options.DropoutProbability > 0)
            throw new NotSupportedException("Dropout inside attention needs the CPU kernel; on this device use dropout outside the attention call.");
        int lq = (int)q.shape[2], lk = (int)k.shape[2], d = (int)q.shape[3];
        using var scope = NewDisposeScope();
        var qs = q;
        if (options.Scale is { } scale)
        {
            using var factor = (scale * Math.Sqrt(d)).ToScalar();
            qs = q.mul(factor);
        }
        bool simpleCausal = options.Causal && lq == lk && options.KeyLengths is null && options.BlockMask is null;
        Tensor? mask = null;
        if (!simpleCausal && (options.Causal || options.KeyLengths is not null || options.BlockMask is not null))
        {
            int batch = (int)q.shape[0];
            var allowed = new bool[batch * lq * lk];
            var shape = new AttentionShape(batch, 1, lq, lk, d);
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < lq; i++)
                    for (int j = 0; j < lk; j++)
                        allowed[((long)b * lq + i) * lk + j] = Visible(shape, options, b, i, j);
            mask = tensor(allowed, new long[] { batch, 1, lq, lk }).to(q.device);
        }
        var result = nn.functional.scaled_dot_product_attention(qs, k, v, mask, 0.0, simpleCausal);
        return result.MoveToOuterDisposeScope();
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

/// <summary>The custom autograd function: forward saves q, k, v, O and the log-sum-exp; backward is Algorithm 4.</summary>
internal sealed unsafe class FlashAttentionFunction : autograd.MultiTensorFunction<FlashAttentionFunction>
{
    public override string Name => "FlashAttention";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var options = (FlashAttentionOptions)vars[3];
        var q = ((Tensor)vars[0]).contiguous();
        var k = ((Tensor)vars[1]).contiguous();
        var v = ((Tensor)vars[2]).contiguous();
        var shape = FlashAttention.ShapeOf(q, k, v);
        var o = empty_like(q);
        var lse = empty(new long[] { shape.Batch, shape.Heads, shape.QueryLength }, ScalarType.Float32);
        FlashAttentionKernel.Forward(shape, Data(q), Data(k), Data(v), Data(o), Data(lse), options);
        ctx.save_for_backward([q, k, v, o.detach(), lse.detach()]);
        ctx.save_data("options", options);
        ctx.mark_non_differentiable([lse]);
        return [o, lse];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grad_outputs)
    {
        var saved = ctx.get_saved_variables();
        var options = (FlashAttentionOptions)ctx.get_data("options");
        Tensor q = saved[0], k = saved[1], v = saved[2], o = saved[3], lse = saved[4];
        var shape = FlashAttention.ShapeOf(q, k, v);
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
