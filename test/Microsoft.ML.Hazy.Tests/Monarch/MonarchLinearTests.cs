using Microsoft.ML.Hazy.Kernels.Monarch;
using Microsoft.ML.Hazy.Layers.Monarch;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;
using DenseTensorF = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;

namespace Microsoft.ML.Hazy.Tests.Monarch;

public sealed class MonarchLinearTests
{
    internal static double MaxAbsDiff(Tensor a, Tensor b)
    {
        using var d = a.is_complex() || b.is_complex() ? (a - b).abs().max() : (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max();
        return d.to(ScalarType.Float64).item<double>();
    }

    [Test]
    public void WorkedExampleOfTheResearchNotes()
    {
        using var w1 = tensor(new double[] { 1, 2, 3, 4, 5, 6, 7, 8 }).reshape(2, 2, 2);
        using var w2 = tensor(new double[] { 1, -1, 2, 0, 0, 1, 1, 3 }).reshape(2, 2, 2);
        using var expected = tensor(new double[] { 1, 2, -5, -6, 0, 0, 7, 8, 2, 4, 0, 0, 3, 4, 21, 24 }).reshape(4, 4);
        using var eye4 = eye(4, dtype: ScalarType.Float64);
        using var m = MonarchMultiply.Bmm(eye4, w1, w2).t();
        Assert.That(MaxAbsDiff(m, expected), Is.EqualTo(0));

        using var projection = MonarchProjection.Project(expected, 2, 2);
        using var back = projection.ToDense();
        Assert.That(MaxAbsDiff(back, expected), Is.LessThan(1e-12));
        Assert.That(projection.SquaredError, Is.LessThan(1e-20));
    }

    [TestCase(4)]
    [TestCase(8)]
    public void SquareClosedForm(int m)
    {
        manual_seed(11);
        using var layer = new MonarchLinear(m * m, m * m, nblocks: m, hasBias: false);
        using var dense = layer.ToDense();
        var w1 = layer.BlockDiagonal1.detach().data<float>().ToArray();
        var w2 = layer.BlockDiagonal2.detach().data<float>().ToArray();
        var d = dense.data<float>().ToArray();
        int n = m * m;
        double worst = 0;
        for (int s = 0; s < m; s++)
            for (int l = 0; l < m; l++)
                for (int k = 0; k < m; k++)
                    for (int p = 0; p < m; p++)
                    {
                        // M[s·m + l, k·m + p] = w2[l, s, k] · w1[k, l, p]
                        double closed = (double)w2[(l * m + s) * m + k] * w1[(k * m + l) * m + p];
                        worst = Math.Max(worst, Math.Abs(closed - d[(s * m + l) * n + k * m + p]));
                    }
        Assert.That(worst, Is.LessThan(1e-6));
    }

    private static IEnumerable<TestCaseData> Shapes()
    {
        yield return new TestCaseData(16, 16, 4);
        yield return new TestCaseData(16, 16, 2);
        yield return new TestCaseData(10, 7, 3);
        yield return new TestCaseData(12, 40, 4);
        yield return new TestCaseData(40, 12, 4);
        yield return new TestCaseData(45, 30, 4);
        yield return new TestCaseData(784, 256, 4);
    }

    [TestCaseSource(nameof(Shapes))]
    public void ForwardEqualsDenseWeight(int inFeatures, int outFeatures, int nblocks)
    {
        manual_seed(5);
        using var layer = new MonarchLinear(inFeatures, outFeatures, nblocks);
        Assert.That(layer.ParameterCount, Is.EqualTo(layer.BlockDiagonal1.numel() + layer.BlockDiagonal2.numel() + outFeatures));
        using var x = randn(2, 3, inFeatures);
        using var y = layer.forward(x);
        Assert.That(y.shape, Is.EqualTo(new long[] { 2, 3, outFeatures }));
        using var w = layer.ToDense();
        Assert.That(w.shape, Is.EqualTo(new long[] { outFeatures, inFeatures }));
        using var dense = x.matmul(w.t()) + layer.Bias!;
        Assert.That(MaxAbsDiff(y, dense), Is.LessThan(1e-5 * Math.Sqrt(inFeatures)));
        using var linear = layer.ToLinear();
        using var z = linear.forward(x);
        Assert.That(MaxAbsDiff(y, z), Is.LessThan(1e-5 * Math.Sqrt(inFeatures)));
    }

    [Test]
    public void InitialisationIsKaimingUniformPerBlock()
    {
        manual_seed(2);
        using var layer = new MonarchLinear(768, 3072, nblocks: 4);
        Assert.That(layer.BlockDiagonal1.shape, Is.EqualTo(new long[] { 4, 192, 192 }));
        Assert.That(layer.BlockDiagonal2.shape, Is.EqualTo(new long[] { 4, 768, 192 }));
        Assert.That(layer.ParameterCount - 3072, Is.EqualTo(737_280));
        double bound = 1 / Math.Sqrt(192);
        using var max1 = layer.BlockDiagonal1.abs().max();
        using var max2 = layer.BlockDiagonal2.abs().max();
        Assert.That(max1.item<float>(), Is.LessThanOrEqualTo(bound).And.GreaterThan(0.99 * bound));
        Assert.That(max2.item<float>(), Is.LessThanOrEqualTo(bound).And.GreaterThan(0.99 * bound));
        using var maxBias = layer.Bias!.abs().max();
        Assert.That(maxBias.item<float>(), Is.LessThanOrEqualTo(1 / Math.Sqrt(3072)));

        using var narrowing = new MonarchLinear(3072, 768, nblocks: 4);
        Assert.That(narrowing.BlockDiagonal1.shape, Is.EqualTo(new long[] { 4, 192, 768 }));
        Assert.That(narrowing.BlockDiagonal2.shape, Is.EqualTo(new long[] { 4, 192, 192 }));
    }

    /// <summary>The reference's third formulation: block_diag matrices and explicit permutations, an independent dense path.</summary>
    private static Tensor PermutationReference(Tensor x, Tensor w1, Tensor w2, Tensor bias, int inFeatures, int outFeatures)
    {
        long k = w1.shape[0], q = w1.shape[1], p = w1.shape[2];
        long l = w2.shape[0], s = w2.shape[1], r = w2.shape[2];
        var r1 = block_diag(Enumerable.Range(0, (int)k).Select(i => w1[i]).ToArray());
        var l2 = block_diag(Enumerable.Range(0, (int)l).Select(i => w2[i]).ToArray());
        // middle: flat f = k·q + q' → (r, l) = (f / L, f % L) → block-diagonal order l·R + r
        var middle = new long[k * q];
        for (long f = 0; f < k * q; f++)
            middle[(f % l) * r + f / l] = f;
        // output: block-diagonal order l·S + s → final s·L + l
        var output = new long[l * s];
        for (long lo = 0; lo < l; lo++)
            for (long so = 0; so < s; so++)
                output[so * l + lo] = lo * s + so;
        var padded = nn.functional.pad(x, new long[] { 0, k * p - inFeatures });
        var h = padded.matmul(r1.t()).index_select(-1, tensor(middle));
        var y = h.matmul(l2.t()).index_select(-1, tensor(output));
        return y.narrow(-1, 0, outFeatures) + bias;
    }

    [TestCase(16, 16, 4)]
    [TestCase(10, 7, 3)]
    [TestCase(12, 40, 4)]
    [TestCase(45, 30, 4)]
    public void GradientsEqualThePermutationReference(int inFeatures, int outFeatures, int nblocks)
    {
        manual_seed(8);
        using var layer = new MonarchLinear(inFeatures, outFeatures, nblocks);
        using var x = randn(5, inFeatures).requires_grad_();
        using var g = randn(5, outFeatures);
        using var loss = (layer.forward(x) * g).sum();
        loss.backward();
        var grads = new[] { x.grad!.clone(), layer.BlockDiagonal1.grad!.clone(), layer.BlockDiagonal2.grad!.clone(), layer.Bias!.grad!.clone() };

        using var x2 = x.detach().clone().requires_grad_();
        using var w1 = layer.BlockDiagonal1.detach().clone().requires_grad_();
        using var w2 = layer.BlockDiagonal2.detach().clone().requires_grad_();
        using var b = layer.Bias!.detach().clone().requires_grad_();
        using var refLoss = (PermutationReference(x2, w1, w2, b, inFeatures, outFeatures) * g).sum();
        refLoss.backward();
        var want = new[] { x2.grad!, w1.grad!, w2.grad!, b.grad! };
        string[] names = { "x", "blkdiag1", "blkdiag2", "bias" };
        for (int i = 0; i < 4; i++)
            Assert.That(MaxAbsDiff(grads[i], want[i]), Is.LessThan(1e-4), names[i]);
    }

    [TestCase(16, 16, 4, new long[] { 4, 16 })]
    [TestCase(10, 7, 3, new long[] { 4, 10 })]
    [TestCase(45, 30, 4, new long[] { 2, 3, 45 })]
    public void OnnxExportEqualsTorchSharp(int inFeatures, int outFeatures, int nblocks, long[] shape)
    {
        manual_seed(3);
        using var layer = new MonarchLinear(inFeatures, outFeatures, nblocks);
        using var x = randn(shape);
        using var expected = layer.forward(x).detach();

        var g = new OnnxGraphBuilder("monarch");
        var input = g.AddInput("x", OnnxElementType.Float, shape.Select(d => (long?)d).ToArray());
        var output = OnnxModuleExporter.Export(g, layer, input);
        g.AddOutput(output, "y", OnnxElementType.Float, expected.shape.Select(d => (long?)d).ToArray());
        using var session = new InferenceSession(g.ToBytes());
        var feed = new DenseTensorF(x.data<float>().ToArray(), shape.Select(d => (int)d).ToArray());
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("x", feed) });
        var actual = results.First().AsEnumerable<float>().ToArray();
        var want = expected.data<float>().ToArray();
        Assert.That(actual.Length, Is.EqualTo(want.Length));
        for (int i = 0; i < want.Length; i++)
            Assert.That(Math.Abs(actual[i] - want[i]), Is.LessThan(1e-5), $"element {i}");
    }

    [Test]
    public void BadInputIsRefusedWithTheShape()
    {
        using var layer = new MonarchLinear(16, 16, 4);
        using var x = randn(3, 15);
        var ex = Assert.Throws<ArgumentException>(() => layer.forward(x));
        Assert.That(ex!.Message, Does.Contain("16").And.Contain("15"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MonarchLinear(16, 8, 9));
    }
}
