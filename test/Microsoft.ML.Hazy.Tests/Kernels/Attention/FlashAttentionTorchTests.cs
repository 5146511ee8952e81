using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.Attention;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Kernels.Attention;

public sealed class FlashAttentionTorchTests
{
    private static (Tensor Q, Tensor K, Tensor V) Inputs(long b, long h, long lq, long lk, long d, int seed)
    {
        var g = new Generator((ulong)seed);
        return (randn([b, h, lq, d], generator: g).requires_grad_(), randn([b, h, lk, d], generator: g).requires_grad_(),
            randn([b, h, lk, d], generator: g).requires_grad_());
    }

    private static double MaxDiff(Tensor a, Tensor b) => (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();

    private static (Tensor O, Tensor Dq, Tensor Dk, Tensor Dv) RunWithGrad(Func<Tensor, Tensor, Tensor, Tensor> attention, Tensor q, Tensor k, Tensor v, Tensor dO)
    {
        foreach (var t in new[] { q, k, v })
            t.grad?.zero_();
        var o = attention(q, k, v);
        o.backward([dO]);
        return (o.detach().clone(), q.grad!.clone(), k.grad!.clone(), v.grad!.clone());
    }

    // The float64 math reference: softmax(QKᵀ/√d + mask)V.
    private static Tensor Reference(Tensor q, Tensor k, Tensor v, bool causal)
    {
        var q64 = q.to(ScalarType.Float64);
        var s = q64.matmul(k.to(ScalarType.Float64).transpose(-2, -1)) / Math.Sqrt(q.shape[3]);
        if (causal)
        {
            var mask = ones(q.shape[2], k.shape[2], dtype: ScalarType.Bool).triu(k.shape[2] - q.shape[2] + 1);
            s = s.masked_fill(mask, double.NegativeInfinity);
        }
        return s.softmax(-1).matmul(v.to(ScalarType.Float64));
    }

    [TestCase(false, 129, 64)]
    [TestCase(true, 200, 32)]
    public void MatchesLibtorchSdpaForwardAndGradients(bool causal, int length, int d)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(2, 3, length, length, d, seed: length);
        var dO = randn([2, 3, length, d], generator: new Generator(99));
        var options = new FlashAttentionOptions { Causal = causal };
        var flash = RunWithGrad((a, b, c) => FlashAttention.Apply(a, b, c, options), q, k, v, dO);
        var sdpa = RunWithGrad((a, b, c) => nn.functional.scaled_dot_product_attention(a, b, c, null, 0.0, causal), q, k, v, dO);
        var exact = Reference(q.detach(), k.detach(), v.detach(), causal);
        // Flash is as close to float64 as SDPA is (2× + 1e-6), and flash and SDPA agree.
        Assert.That(MaxDiff(flash.O, exact), Is.LessThanOrEqualTo(2 * MaxDiff(sdpa.O, exact) + 1e-6));
        Assert.That(MaxDiff(flash.O, sdpa.O), Is.LessThan(1e-5));
        Assert.That(MaxDiff(flash.Dq, sdpa.Dq), Is.LessThan(1e-4));
        Assert.That(MaxDiff(flash.Dk, sdpa.Dk), Is.LessThan(1e-4));
        Assert.That(MaxDiff(flash.Dv, sdpa.Dv), Is.LessThan(1e-4));
    }

    [Test]
    public void ModuleAcceptsNonContiguousInputsAndCausalLengthsDiffer()
    {
        using var scope = NewDisposeScope();
        // [B, L, H, d] projections viewed as [B, H, L, d]: a transposed, non-contiguous view.
        var g = new Generator(5);
        var q = randn([2, 40, 4, 16], generator: g).transpose(1, 2);
        var k = randn([2, 90, 4, 16], generator: g).transpose(1, 2);
        var v = randn([2, 90, 4, 16], generator: g).transpose(1, 2);
        Assert.That(q.is_contiguous(), Is.False);
        using var module = new FlashAttentionModule(new FlashAttentionOptions { Causal = true });
        var o = module.forward(q, k, v);
        Assert.That(o.shape, Is.EqualTo(new long[] { 2, 4, 40, 16 }));
        Assert.That(MaxDiff(o, Reference(q, k, v, causal: true)), Is.LessThan(1e-5));
    }

    [Test]
    public void TrainsInsideAModelAndDropoutIsOffInEval()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(1);
        using var module = new FlashAttentionModule(new FlashAttentionOptions { DropoutProbability = 0.2 });
        var (q, k, v) = Inputs(1, 2, 64, 64, 16, seed: 3);
        module.train();
        var a = module.forward(q, k, v);
        var b = module.forward(q, k, v);
        Assert.That(MaxDiff(a, b), Is.GreaterThan(1e-3), "each training call draws a new dropout mask");
        a.sum().backward();
        Assert.That(q.grad!.abs().sum().item<float>(), Is.GreaterThan(0));
        module.eval();
        var e = module.forward(q, k, v);
        Assert.That(MaxDiff(e, Reference(q, k, v, causal: false)), Is.LessThan(1e-5));
    }

    // The registry sends float64 (which Hazy's CPU kernel does not take) to the libtorch reference: it must give the
    // float64 math result. Mixed element types and mismatched shapes are refused with a clear message.
    [Test]
    public void Float64FallsBackToTheReferenceAndBadInputsAreRejectedClearly()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        var q = randn([1, 2, 8, 4], dtype: ScalarType.Float64, generator: g);
        var k = randn([1, 2, 11, 4], dtype: ScalarType.Float64, generator: g);
        var v = randn([1, 2, 11, 4], dtype: ScalarType.Float64, generator: g);
        var o = FlashAttention.Apply(q, k, v, new FlashAttentionOptions { Causal = true });
        Assert.That(o.dtype, Is.EqualTo(ScalarType.Float64));
        Assert.That(MaxDiff(o, Reference(q, k, v, causal: true)), Is.LessThan(1e-12));
        var ex = Assert.Throws<ArgumentException>(() => FlashAttention.Apply(q, k.to(ScalarType.Float32), v));
        Assert.That(ex!.Message, Does.Contain("element type"));
        var f = randn(1, 1, 8, 4);
        ex = Assert.Throws<ArgumentException>(() => FlashAttention.Apply(f, randn(1, 1, 8, 5), randn(1, 1, 8, 5)));
        Assert.That(ex!.Message, Does.Contain("do not match"));
    }
}
