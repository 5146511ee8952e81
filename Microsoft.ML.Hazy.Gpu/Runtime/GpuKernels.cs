using System.Runtime.InteropServices;
using Microsoft.ML.Hazy.Gpu.Kernels;
using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.Attention;
using Microsoft.ML.Hazy.Kernels.Monarch;
using Microsoft.ML.Hazy.Kernels.S4D;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Gpu.Runtime;

/// <summary>
/// The kernel provider of this assembly: FlashAttention, the S4D Vandermonde product and the fused Monarch product on
/// float32 tensors of one device type, launched through a <see cref="IKernelBackend"/> directly on the tensors' memory.
/// <see cref="HazyGpu.Enable"/> registers one for CUDA tensors over the CUDA driver; tests build one for CPU tensors over
/// ILGPU's CPU accelerator, so the same kernels and the same autograd code run in CI. Attention with dropout goes to the
/// libtorch reference (the kernels have no dropout); second-order gradients use the differentiable libtorch formulas,
/// as in the CPU provider.
/// </summary>
internal sealed class GpuKernels : IKernelProvider, IAttentionKernels, IMonarchKernels, IS4DKernels
{
    /// <summary>Creates a provider for tensors on <paramref name="device"/> run by <paramref name="backend"/>.</summary>
    public GpuKernels(IKernelBackend backend, DeviceType device)
    {
        Backend = backend ?? throw new ArgumentNullException(nameof(backend));
        Device = device;
    }

    /// <summary>What launches the kernels.</summary>
    public IKernelBackend Backend { get; }

    /// <summary>The device type whose tensors this provider takes.</summary>
    public DeviceType Device { get; }

    /// <inheritdoc/>
    public string Name => $"hazy-gpu stage-1 fp32 ({Backend.Name})";

    /// <inheritdoc/>
    public IAttentionKernels Attention => this;

    /// <inheritdoc/>
    public IMonarchKernels Monarch => this;

    /// <inheritdoc/>
    public IS4DKernels S4D => this;

    /// <summary>The dispatch predicate: this provider's device type and float32.</summary>
    public bool Supports(DeviceType device, ScalarType dtype) => device == Device && dtype == ScalarType.Float32;

    (Tensor Output, Tensor? LogSumExp) IAttentionKernels.Attention(Tensor q, Tensor k, Tensor v, FlashAttentionOptions options, bool withLogSumExp)
    {
        var shape = ReferenceAttention.ShapeOf(q, k, v);
        ReferenceAttention.Validate(shape, options);
        if (options.DropoutProbability > 0)
            return KernelRegistry.Reference.Attention!.Attention(q, k, v, options, withLogSumExp);
        var outputs = GpuAttentionFunction.apply(q, k, v, new AttentionCall(this, options.Clone()));
        if (withLogSumExp)
            return (outputs[0], outputs[1]);
        outputs[1].Dispose();
        return (outputs[0], null);
    }

    Tensor IMonarchKernels.Multiply(Tensor x, Tensor w1, Tensor w2) => GpuMonarchFunction.apply(x, w1, w2, this);

    Tensor IS4DKernels.Kernel(Tensor cTilde, Tensor logDA, long length)
    {
        using var scope = NewDisposeScope();
        long block = S4DMath.BlockLength(length), blocks = (length + block - 1) / block;
        var w = logDA.unsqueeze(-1);
        using var zero = 0.ToScalar();
        using var one = 1.ToScalar();
        using var blockLength = block.ToScalar();
        using var blockCount = blocks.ToScalar();
        var realType = logDA.real.dtype;
        // The powers Ā^j and Ā^{bJ} by libtorch (differentiable in log Ā); the kernel sums their products without an H·N·L tensor.
        var inner = (w * arange(zero, blockLength, one, realType, logDA.device)).exp();
        var outer = (w * (arange(zero, blockCount, one, realType, logDA.device) * blockLength)).exp();
        var kernel = GpuS4DFunction.apply(cTilde, outer, inner, new S4DCall(this, length, block));
        return kernel.MoveToOuterDisposeScope();
    }

    Tensor IS4DKernels.Convolve(Tensor u, Tensor kernel) => S4DMath.FftConv(u, kernel);

    /// <summary>The attention launch settings of <paramref name="options"/> (tile sizes from the block mask when set).</summary>
    public static AttentionParams Plan(AttentionShape shape, FlashAttentionOptions options)
    {
        var mask = options.BlockMask;
        int br = mask?.QueryBlockSize ?? options.QueryBlockSize, bc = mask?.KeyBlockSize ?? options.KeyBlockSize;
        return new AttentionParams
        {
            Heads = shape.Heads,
            QueryLength = shape.QueryLength,
            KeyLength = shape.KeyLength,
            HeadDim = shape.HeadDim,
            Scale = (float)(options.Scale ?? 1.0 / Math.Sqrt(shape.HeadDim)),
            Causal = options.Causal ? 1 : 0,
            HasKeyLengths = options.KeyLengths is null ? 0 : 1,
            HasBlockMask = mask is null ? 0 : 1,
            QueryBlockSize = br,
            KeyBlockSize = bc,
            QueryBlocks = (shape.QueryLength + br - 1) / br,
            KeyBlocks = (shape.KeyLength + bc - 1) / bc,
        };
    }

    /// <summary>The block mask as 0/1 ints (row-major, query blocks × key blocks), or one 0 when there is none.</summary>
    public static int[] MaskCells(FlashAttentionOptions options)
    {
        if (options.BlockMask is not { } m)
            return [0];
        var cells = new int[m.QueryBlocks * m.KeyBlocks];
        for (int i = 0; i < m.QueryBlocks; i++)
            for (int j = 0; j < m.KeyBlocks; j++)
                cells[i * m.KeyBlocks + j] = m[i, j] ? 1 : 0;
        return cells;
    }

    /// <summary>A tensor's memory as a kernel argument (the tensor must be contiguous and stay alive during the launch).</summary>
    public static DeviceView View(Tensor t) => new(THSTensor_data(t.Handle), t.numel() * (t.is_complex() ? 2 : 1));

    /// <summary>The device index to launch on (0 for CPU tensors).</summary>
    public static int DeviceIndex(Tensor t) => t.device_type == DeviceType.CPU ? 0 : t.device_index;

    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);
}

/// <summary>One attention call: the provider and the options.</summary>
internal sealed record AttentionCall(GpuKernels Kernels, FlashAttentionOptions Options);

/// <summary>One S4D kernel call: the provider, the kernel length and the block length.</summary>
internal sealed record S4DCall(GpuKernels Kernels, long Length, long Block);

/// <summary>The autograd function of the attention kernels: forward saves q, k, v, O and lse; backward is FlashAttention-2's (D, then dQ and dK/dV).</summary>
internal sealed class GpuAttentionFunction : autograd.MultiTensorFunction<GpuAttentionFunction>
{
    public override string Name => "HazyGpuFlashAttention";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var call = (AttentionCall)vars[3];
        Tensor q0 = (Tensor)vars[0], k0 = (Tensor)vars[1], v0 = (Tensor)vars[2];
        using var q = q0.contiguous();
        using var k = k0.contiguous();
        using var v = v0.contiguous();
        var shape = ReferenceAttention.ShapeOf(q, k, v);
        var p = GpuKernels.Plan(shape, call.Options);
        var o = empty_like(q);
        var lse = empty(new long[] { shape.Batch, shape.Heads, shape.QueryLength }, ScalarType.Float32, q.device);
        using var lengths = KeyLengths(call.Options, q.device);
        using var mask = tensor(GpuKernels.MaskCells(call.Options), ScalarType.Int32, q.device);
        call.Kernels.Backend.Launch(KernelEntry.AttentionForward, GpuKernels.DeviceIndex(q), shape.Batch * shape.Heads * p.QueryBlocks, p.QueryBlockSize,
            GpuKernels.View(q), GpuKernels.View(k), GpuKernels.View(v), GpuKernels.View(o), GpuKernels.View(lse), GpuKernels.View(lengths), GpuKernels.View(mask), p);
        ctx.save_for_backward([q0, k0, v0, o.detach(), lse.detach()]);
        ctx.save_data("call", call);
        ctx.mark_non_differentiable([lse]);
        return [o, lse];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grad_outputs)
    {
        var saved = ctx.get_saved_variables();
        var call = (AttentionCall)ctx.get_data("call");
        Tensor q0 = saved[0], k0 = saved[1], v0 = saved[2], o = saved[3], lse = saved[4];
        try
        {
            var shape = ReferenceAttention.ShapeOf(q0, k0, v0);
            if (is_grad_enabled())
            {
                var (gq, gk, gv) = ReferenceAttention.Backward(shape, q0, k0, v0, grad_outputs[0], call.Options);
                return [gq, gk, gv, null!];
            }
            using var q = q0.contiguous();
            using var k = k0.contiguous();
            using var v = v0.contiguous();
            using var dO = grad_outputs[0].contiguous();
            var p = GpuKernels.Plan(shape, call.Options);
            var dq = empty_like(q);
            var dk = empty_like(k);
            var dv = empty_like(v);
            using var delta = empty_like(lse);
            using var lengths = KeyLengths(call.Options, q.device);
            using var mask = tensor(GpuKernels.MaskCells(call.Options), ScalarType.Int32, q.device);
            var backend = call.Kernels.Backend;
            int device = GpuKernels.DeviceIndex(q), bh = shape.Batch * shape.Heads;
            backend.Launch(KernelEntry.AttentionDelta, device, bh * p.QueryBlocks, p.QueryBlockSize, GpuKernels.View(o), GpuKernels.View(dO), GpuKernels.View(delta), p);
            backend.Launch(KernelEntry.AttentionBackwardQuery, device, bh * p.QueryBlocks, p.QueryBlockSize,
                GpuKernels.View(q), GpuKernels.View(k), GpuKernels.View(v), GpuKernels.View(dO), GpuKernels.View(lse), GpuKernels.View(delta), GpuKernels.View(dq),
                GpuKernels.View(lengths), GpuKernels.View(mask), p);
            backend.Launch(KernelEntry.AttentionBackwardKey, device, bh * p.KeyBlocks, p.KeyBlockSize,
                GpuKernels.View(q), GpuKernels.View(k), GpuKernels.View(v), GpuKernels.View(dO), GpuKernels.View(lse), GpuKernels.View(delta), GpuKernels.View(dk),
                GpuKernels.View(dv), GpuKernels.View(lengths), GpuKernels.View(mask), p);
            return [dq, dk, dv, null!];
        }
        finally
        {
            foreach (var t in saved)
                t.Dispose();
        }
    }

    private static Tensor KeyLengths(FlashAttentionOptions options, Device device) =>
        tensor(options.KeyLengths ?? [0], ScalarType.Int32, device);
}

/// <summary>The autograd function of the S4D kernels over (C̃, outer powers, inner powers).</summary>
internal sealed class GpuS4DFunction : autograd.SingleTensorFunction<GpuS4DFunction>
{
    public override string Name => "HazyGpuS4DKernel";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var call = (S4DCall)vars[3];
        Tensor c0 = (Tensor)vars[0], outer0 = (Tensor)vars[1], inner0 = (Tensor)vars[2];
        using var c = c0.contiguous();
        using var outer = outer0.contiguous();
        using var inner = inner0.contiguous();
        var p = Plan(c, call);
        var kernel = empty(new long[] { p.Channels, p.Heads, p.Length }, ScalarType.Float32, c.device);
        long total = (long)p.Channels * p.Heads * p.Length;
        call.Kernels.Backend.Launch(KernelEntry.S4DForward, GpuKernels.DeviceIndex(c), (int)((total + 63) / 64), 64,
            GpuKernels.View(c), GpuKernels.View(outer), GpuKernels.View(inner), GpuKernels.View(kernel), p);
        ctx.save_for_backward([c0, outer0, inner0]);
        ctx.save_data("call", call);
        return kernel;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
    {
        var saved = ctx.get_saved_variables();
        var call = (S4DCall)ctx.get_data("call");
        try
        {
            if (is_grad_enabled())
            {
                var (gc, go, gi) = ReferenceBackward(saved[0], saved[1], saved[2], grad, call);
                return [gc, go, gi, null!];
            }
            using var c = saved[0].contiguous();
            using var outer = saved[1].contiguous();
            using var inner = saved[2].contiguous();
            using var g = grad.contiguous();
            var p = Plan(c, call);
            var dc = empty_like(c);
            var dOuter = empty_like(outer);
            var dInner = empty_like(inner);
            long threads = (long)p.Heads * p.Modes;
            call.Kernels.Backend.Launch(KernelEntry.S4DBackward, GpuKernels.DeviceIndex(c), (int)((threads + 31) / 32), 32,
                GpuKernels.View(c), GpuKernels.View(outer), GpuKernels.View(inner), GpuKernels.View(g), GpuKernels.View(dc), GpuKernels.View(dOuter), GpuKernels.View(dInner), p);
            return [dc, dOuter, dInner, null!];
        }
        finally
        {
            foreach (var t in saved)
                t.Dispose();
        }
    }

    private static S4DParams Plan(Tensor c, S4DCall call)
    {
        if (c.dtype != ScalarType.ComplexFloat32)
            throw new ArgumentException($"The GPU S4D kernel takes complex64 C̃; got {c.dtype}.");
        return new S4DParams
        {
            Channels = (int)c.shape[0],
            Heads = (int)c.shape[1],
            Modes = (int)c.shape[2],
            Length = (int)call.Length,
            BlockLength = (int)call.Block,
            Blocks = (int)((call.Length + call.Block - 1) / call.Block),
        };
    }

    /// <summary>
    /// The kernel's gradients as differentiable libtorch formulas (for second-order gradients): with A = C̃·outer and
    /// G the upstream gradient in blocks, dA = 2 G·conj(inner)ᵀ, dC̃ = Σ_b dA·conj(outer), d outer = Σ_c dA·conj(C̃),
    /// d inner = 2 Σ_c conj(A)ᵀ G.
    /// </summary>
    internal static (Tensor DC, Tensor DOuter, Tensor DInner) ReferenceBackward(Tensor c, Tensor outer, Tensor inner, Tensor grad, S4DCall call)
    {
        using var scope = NewDisposeScope();
        long channels = c.shape[0], heads = c.shape[1], blocks = outer.shape[2], block = call.Block;
        var g = nn.functional.pad(grad, new[] { 0L, blocks * block - call.Length }).reshape(channels, heads, blocks, block).to(c.dtype);
        using var two = 2.ToScalar();
        var da = g.matmul(inner.conj().transpose(-1, -2)).mul(two);                 // [C, H, B, N]
        var dc = da.mul(outer.conj().transpose(-1, -2)).sum(2);                     // [C, H, N]
        var dOuter = da.mul(c.conj().unsqueeze(2)).sum(0L).transpose(-1, -2);        // [H, N, B]
        var a = c.unsqueeze(-1).mul(outer);                                          // [C, H, N, B]
        var dInner = a.conj().matmul(g).sum(0L).mul(two);                            // [H, N, J]
        return (dc.MoveToOuterDisposeScope(), dOuter.MoveToOuterDisposeScope(), dInner.MoveToOuterDisposeScope());
    }
}

/// <summary>
/// The autograd function of the fused Monarch kernel: the forward in one launch; the backward (first order and
/// create_graph alike) differentiates libtorch's <see cref="MonarchMultiply.Bmm"/>, the same four bmm products the CPU
/// provider runs by default.
/// </summary>
internal sealed class GpuMonarchFunction : autograd.SingleTensorFunction<GpuMonarchFunction>
{
    public override string Name => "HazyGpuMonarch";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var kernels = (GpuKernels)vars[3];
        using var x = ((Tensor)vars[0]).contiguous();
        using var w1 = ((Tensor)vars[1]).contiguous();
        using var w2 = ((Tensor)vars[2]).contiguous();
        var p = new MonarchParams
        {
            Batch = (int)x.shape[0],
            K = (int)w1.shape[0],
            Q = (int)w1.shape[1],
            P = (int)w1.shape[2],
            L = (int)w2.shape[0],
            S = (int)w2.shape[1],
            R = (int)w2.shape[2],
        };
        var y = empty(new long[] { p.Batch, (long)p.L * p.S }, ScalarType.Float32, x.device);
        using var h = empty(new long[] { p.Batch, (long)p.L * p.R }, ScalarType.Float32, x.device);
        long threads = (long)p.Batch * p.L;
        kernels.Backend.Launch(KernelEntry.MonarchForward, GpuKernels.DeviceIndex(x), (int)((threads + 63) / 64), 64,
            GpuKernels.View(x), GpuKernels.View(w1), GpuKernels.View(w2), GpuKernels.View(y), GpuKernels.View(h), p);
        ctx.save_for_backward([(Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]]);
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
    {
        var saved = ctx.get_saved_variables();
        bool create = is_grad_enabled();
        var inputs = create ? saved : saved.Select(t => t.detach().requires_grad_(true)).ToList();
        var wanted = inputs.Where(t => t.requires_grad).ToList();
        var result = new List<Tensor> { null!, null!, null!, null! };
        if (wanted.Count > 0)
        {
            using var enabled = enable_grad();
            using var y = MonarchMultiply.Bmm(inputs[0], inputs[1], inputs[2]);
            var grads = autograd.grad([y], wanted, [grad], retain_graph: create, create_graph: create);
            for (int i = 0, w = 0; i < 3; i++)
                if (inputs[i].requires_grad)
                    result[i] = grads[w++];
        }
        if (!create)
            foreach (var t in inputs)
                t.Dispose();
        foreach (var t in saved)
            t.Dispose();
        return result;
    }
}
