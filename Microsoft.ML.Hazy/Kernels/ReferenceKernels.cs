using Microsoft.ML.Hazy.Kernels.Attention;
using Microsoft.ML.Hazy.Kernels.Monarch;
using Microsoft.ML.Hazy.Kernels.S4D;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Kernels;

/// <summary>
/// The libtorch reference math of every kernel: plain tensor operations on any device and element type, differentiable
/// to any order by libtorch's autograd. What the registry falls back to, and what conformance tests compare against.
/// Attention materialises the [Lq, Lk] scores (<see cref="ReferenceAttention"/>) except on non-CPU devices without
/// dropout and log-sum-exp, where it calls libtorch's <c>scaled_dot_product_attention</c> as before the registry.
/// </summary>
internal sealed class ReferenceKernels : IKernelProvider, IAttentionKernels, IMonarchKernels, IS4DKernels
{
    /// <summary>The one instance (it has no settings).</summary>
    public static ReferenceKernels Instance { get; } = new();

    private ReferenceKernels()
    {
    }

    /// <inheritdoc/>
    public string Name => "libtorch reference";

    /// <inheritdoc/>
    public IAttentionKernels Attention => this;

    /// <inheritdoc/>
    public IMonarchKernels Monarch => this;

    /// <inheritdoc/>
    public IS4DKernels S4D => this;

    bool IAttentionKernels.Supports(DeviceType device, ScalarType dtype) => true;

    (Tensor Output, Tensor? LogSumExp) IAttentionKernels.Attention(Tensor q, Tensor k, Tensor v, FlashAttentionOptions options, bool withLogSumExp)
    {
        var shape = ReferenceAttention.ShapeOf(q, k, v);
        if (q.device_type != DeviceType.CPU && !withLogSumExp && options.DropoutProbability == 0)
            return (ReferenceAttention.Sdpa(q, k, v, options), null);
        var (o, lse) = ReferenceAttention.Forward(shape, q, k, v, options);
        if (withLogSumExp)
            return (o, lse);
        lse.Dispose();
        return (o, null);
    }

    bool IMonarchKernels.Supports(DeviceType device, ScalarType dtype) => true;

    Tensor IMonarchKernels.Multiply(Tensor x, Tensor w1, Tensor w2) => MonarchMultiply.Bmm(x, w1, w2);

    bool IS4DKernels.Supports(DeviceType device, ScalarType dtype) => true;

    Tensor IS4DKernels.Kernel(Tensor cTilde, Tensor logDA, long length) => S4DMath.Kernel(cTilde, logDA, length);

    Tensor IS4DKernels.Convolve(Tensor u, Tensor kernel) => S4DMath.FftConv(u, kernel);
}
