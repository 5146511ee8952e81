using Microsoft.ML.Hazy.Kernels;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Kernels.S4D;

/// <summary>
/// The S4D conformance suite: every S4D provider's Vandermonde kernel and convolution against a direct computation
/// (powers Ā^ℓ and the O(L²) sum y_t = Σ_s k_{t−s} u_s written out), values and second-order gradients.
/// </summary>
[TestFixtureSource(typeof(KernelProviderCases), nameof(KernelProviderCases.S4D))]
public sealed class S4DConformanceTests(KernelProviderCase provider)
{
    private readonly IS4DKernels _kernels = provider.Provider.S4D!;

    private sealed record Inputs(Tensor LogReal, Tensor LogImag, Tensor CReal, Tensor CImag, Tensor U, Tensor W);

    private static Inputs Make(long h, long modes, long length, bool bidirectional)
    {
        var g = new Generator(23);
        long channels = bidirectional ? 2 : 1;
        using var low = 0.05.ToScalar();
        // log Ā = Δ·A with Re < 0 (a stable mode), Im moderate.
        var logReal = rand([h, modes], generator: g).mul(low).add(low).neg();
        var logImag = randn([h, modes], generator: g);
        var cReal = randn([channels, h, modes], generator: g);
        var cImag = randn([channels, h, modes], generator: g);
        var u = randn([2, length, h], generator: g);
        var w = randn([2, length, h], generator: g);
        return new Inputs(logReal, logImag, cReal, cImag, u, w);
    }

    // K[c, h, ℓ] = 2·Re Σ_n C̃·exp(ℓ·log Ā), then y_t = Σ_{s≤t} K0_{t−s} u_s (+ Σ_{s>t} K1_{s−t−1} u_s), written out.
    private static Tensor DirectForward(Tensor logDA, Tensor cTilde, Tensor u)
    {
        long length = u.shape[1];
        using var zero = 0.ToScalar();
        using var end = length.ToScalar();
        using var step = 1.ToScalar();
        var steps = arange(zero, end, step, logDA.real.dtype);
        var powers = logDA.unsqueeze(-1).mul(steps).exp();                 // [H, N, L]
        var k = cTilde.unsqueeze(-1).mul(powers).sum(2).real.mul(2.ToScalar());   // [C, H, L]
        // Toeplitz matrices T[h, t, s] = K0[h, t − s] for s ≤ t, K1[h, s − t − 1] for s > t.
        var t = arange(zero, end, step, ScalarType.Int64);
        var lag = t.unsqueeze(1).sub(t.unsqueeze(0));                        // t − s
        var causal = lag.ge(0.ToScalar());
        var forward = k[0].index_select(1, lag.clamp(0.ToScalar()).flatten()).reshape(k.shape[1], length, length);
        var toeplitz = forward.mul(causal.to(forward.dtype));
        if (k.shape[0] == 2)
        {
            var back = lag.neg().sub(1.ToScalar()).clamp(0.ToScalar());
            var backward = k[1].index_select(1, back.flatten()).reshape(k.shape[1], length, length);
            toeplitz = toeplitz.add(backward.mul(causal.logical_not().to(backward.dtype)));
        }
        // y[b, t, h] = Σ_s T[h, t, s] u[b, s, h]
        return einsum("hts,bsh->bth", toeplitz, u);
    }

    private Tensor ProviderForward(Tensor logDA, Tensor cTilde, Tensor u) =>
        _kernels.Convolve(u, _kernels.Kernel(cTilde, logDA, u.shape[1]));

    private static (Tensor LogDA, Tensor CTilde, Tensor U, Tensor[] Leaves) Leaves(Inputs x, ScalarType type)
    {
        var leaves = new[] { x.LogReal, x.LogImag, x.CReal, x.CImag, x.U }.Select(t => t.to(type).detach().requires_grad_()).ToArray();
        return (complex(leaves[0], leaves[1]), complex(leaves[2], leaves[3]), leaves[4], leaves);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void ForwardMatchesTheDirectSum(bool bidirectional)
    {
        using var scope = NewDisposeScope();
        var x = Make(3, 4, 50, bidirectional);
        var (logDA, cTilde, u, _) = Leaves(x, ScalarType.Float64);
        var direct = DirectForward(logDA, cTilde, u);
        var actual = ProviderForward(logDA, cTilde, u);
        double scale = direct.abs().max().item<double>();
        Assert.That(actual.sub(direct).abs().max().item<double>(), Is.LessThan(1e-10 * scale));
    }

    // Second order: ∇ Σ (∂⟨W, y⟩/∂u)² with respect to log Ā and C̃ (real and imaginary parts), with create_graph: true,
    // through the provider in float32 against the direct sum in float64. The bound is twice the direct sum's own float32
    // error plus 1e-5 relative: the FFT route's round-off grows with log₂(2L) ≈ 7 steps of a few ulp each.
    [TestCase(false)]
    [TestCase(true)]
    public void SecondOrderGradientsMatchTheDirectSum(bool bidirectional)
    {
        using var scope = NewDisposeScope();
        var x = Make(3, 4, 50, bidirectional);
        Tensor[] SecondOrder(Func<Tensor, Tensor, Tensor, Tensor> forward, ScalarType type)
        {
            var (logDA, cTilde, u, leaves) = Leaves(x, type);
            var loss = forward(logDA, cTilde, u).mul(x.W.to(type)).sum();
            var du = autograd.grad([loss], [u], retain_graph: true, create_graph: true)[0];
            var penalty = du.pow(2.ToScalar()).sum();
            return autograd.grad([penalty], leaves.Take(4).ToArray()).Select(t => t.to(ScalarType.Float64)).ToArray();
        }
        var actual = SecondOrder(ProviderForward, ScalarType.Float32);
        var exact = SecondOrder(DirectForward, ScalarType.Float64);
        var single = SecondOrder(DirectForward, ScalarType.Float32);
        string[] names = ["Re log Ā", "Im log Ā", "Re C̃", "Im C̃"];
        for (int i = 0; i < 4; i++)
        {
            double scale = exact[i].abs().max().item<double>();
            double err = actual[i].sub(exact[i]).abs().max().item<double>();
            double naive = single[i].sub(exact[i]).abs().max().item<double>();
            Assert.That(scale, Is.GreaterThan(0), $"{names[i]}: the second-order gradient is not trivially zero");
            Assert.That(err, Is.LessThanOrEqualTo(2 * naive + 1e-5 * scale), $"{names[i]}: error {err:E2}, direct float32 error {naive:E2}, scale {scale:E2}");
        }
    }
}
