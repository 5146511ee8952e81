using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DenseTensorF = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;

namespace Microsoft.ML.Hazy.Tests.Cnn;

public sealed class CnnNetworkTests
{
    private static IEnumerable<TestCaseData> Architectures()
    {
        // channels, height, width, filters, kernel, stride, padding
        yield return new TestCaseData(3, 7, 9, new[] { 5, 6 }, 3, 2, 1).SetName("C3 7x9 k3 s2 p1");
        yield return new TestCaseData(2, 8, 8, new[] { 4 }, 3, 1, 0).SetName("C2 8x8 k3 s1 p0");
        yield return new TestCaseData(1, 10, 6, new[] { 3, 4, 5 }, 5, 1, 2).SetName("C1 10x6 k5 s1 p2");
        yield return new TestCaseData(3, 9, 7, new[] { 4, 4 }, 2, 2, 0).SetName("C3 9x7 k2 s2 p0");
    }

    /// <summary>A network whose BatchNorm layers have non-trivial affine parameters and running statistics.</summary>
    private static CnnNetwork Trained(int c, int h, int w, int[] filters, int k, int s, int p, int outputs = 4)
    {
        manual_seed(5);
        var net = new CnnNetwork(c, h, w, filters, k, s, p, 0.25, outputs);
        using (no_grad())
        {
            foreach (var norm in net.Layers.OfType<BatchNorm2d>())
            {
                norm.weight!.copy_(rand(norm.weight.shape) + 0.5);
                norm.bias!.copy_(randn(norm.bias.shape));
            }
            net.train();
            for (int i = 0; i < 5; i++)
            {
                using var x = randn(16, c * h * w) * 3 + 1;
                net.forward(x).Dispose();
            }
        }
        net.eval();
        foreach (var norm in net.Layers.OfType<BatchNorm2d>())
            Assert.That(norm.running_var!.mean().item<float>(), Is.Not.EqualTo(1f).Within(0.05), "running statistics were updated");
        return net;
    }

    [TestCaseSource(nameof(Architectures))]
    public void OnnxRuntimeEqualsTorchSharp(int c, int h, int w, int[] filters, int k, int s, int p)
    {
        using var net = Trained(c, h, w, filters, k, s, p);
        int d = c * h * w;
        using var x = randn(6, d) * 2;
        using var expected = net.forward(x);
        var want = expected.data<float>().ToArray();

        // The network alone on a batch of flat rows.
        var g = new OnnxGraphBuilder("cnn");
        var output = net.ExportOnnx(g, g.AddInput("x", OnnxElementType.Float, null, d));
        g.AddOutput(output, "y", OnnxElementType.Float, null, 4);
        using (var session = new InferenceSession(g.ToBytes()))
        using (var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("x", new DenseTensorF(x.data<float>().ToArray(), new[] { 6, d })) }))
            AssertClose(results.First().AsEnumerable<float>().ToArray(), want, "batched logits");

        // The per-row graph ML.NET's OnnxTransformer runs: one flat row of C·H·W values.
        using var probabilities = nn.functional.softmax(expected, 1);
        var graph = OnnxScoringBridge.BuildGraph(net, "Features", new long[] { d }, OutputHead.For(PredictionKind.MulticlassClassification, LabelKeyValues.Unnamed(4)), batched: false);
        using var rowSession = new InferenceSession(graph);
        for (int i = 0; i < 6; i++)
        {
            using var row = x[i];
            using var results = rowSession.Run(new[] { NamedOnnxValue.CreateFromTensor("Features", new DenseTensorF(row.data<float>().ToArray(), new[] { d })) });
            using var wantRow = probabilities[i];
            AssertClose(results.First(r => r.Name == "Score").AsEnumerable<float>().ToArray(), wantRow.data<float>().ToArray(), $"row {i}");
        }
    }

    [Test]
    public void LayersAreTheFlatForwardOrder()
    {
        using var net = Trained(2, 6, 8, new[] { 3, 5 }, 3, 2, 1);
        var types = net.Layers.Select(l => l.GetType()).ToArray();
        Assert.That(types, Is.EqualTo(new[]
        {
            typeof(Unflatten), typeof(Conv2d), typeof(BatchNorm2d), typeof(ReLU), typeof(SeededDropout),
            typeof(Conv2d), typeof(BatchNorm2d), typeof(ReLU), typeof(SeededDropout), typeof(Flatten), typeof(Linear),
        }));
        using var x = randn(3, 96);
        using var expected = net.forward(x);
        var y = x.clone();
        foreach (var layer in net.Layers)
        {
            var next = layer.forward(y);
            y.Dispose();
            y = next;
        }
        using (y)
            Assert.That(y.allclose(expected), Is.True);
        Assert.That(((Linear)net.Layers[^1]).in_features, Is.EqualTo(5 * 2 * 2), "6×8 → 3×4 → 2×2 feature maps of 5 channels");
    }

    [Test]
    public void NoDropoutLayersWhenTheRateIsZero()
    {
        using var net = new CnnNetwork(1, 4, 4, new[] { 2 }, 3, 1, 1, 0, 2);
        Assert.That(net.Layers.OfType<SeededDropout>(), Is.Empty);
    }

    private static void AssertClose(float[] actual, float[] expected, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        double scale = Math.Max(1e-6, expected.Max(Math.Abs));
        for (int j = 0; j < actual.Length; j++)
            Assert.That(Math.Abs(actual[j] - expected[j]) / scale, Is.LessThanOrEqualTo(1e-4), $"{what}, element {j}: {actual[j]} vs {expected[j]}");
    }
}
