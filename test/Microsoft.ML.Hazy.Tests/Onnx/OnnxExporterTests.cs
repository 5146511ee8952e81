using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.OnnxRuntime;
using DenseTensorF = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using Tensor = TorchSharp.torch.Tensor;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Onnx;

/// <summary>Every exporter against TorchSharp on random inputs, run in the real ONNX Runtime.</summary>
public sealed class OnnxExporterTests
{
    private static IEnumerable<TestCaseData> Modules()
    {
        yield return new TestCaseData("Linear", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Linear(6, 5)), new long[] { 4, 6 });
        yield return new TestCaseData("Linear without bias", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Linear(6, 5, hasBias: false)), new long[] { 4, 6 });
        yield return new TestCaseData("ReLU", (Func<nn.Module<Tensor, Tensor>>)(() => nn.ReLU()), new long[] { 4, 6 });
        yield return new TestCaseData("GELU", (Func<nn.Module<Tensor, Tensor>>)(() => nn.GELU()), new long[] { 4, 6 });
        yield return new TestCaseData("GELU tanh", (Func<nn.Module<Tensor, Tensor>>)(() => TanhGelu()), new long[] { 4, 6 });
        yield return new TestCaseData("Tanh", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Tanh()), new long[] { 4, 6 });
        yield return new TestCaseData("Sigmoid", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Sigmoid()), new long[] { 4, 6 });
        yield return new TestCaseData("SiLU", (Func<nn.Module<Tensor, Tensor>>)(() => nn.SiLU()), new long[] { 4, 6 });
        yield return new TestCaseData("Dropout", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Dropout(0.5)), new long[] { 4, 6 });
        yield return new TestCaseData("Softmax", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Softmax(1)), new long[] { 4, 6 });
        yield return new TestCaseData("LayerNorm", (Func<nn.Module<Tensor, Tensor>>)(() => TrainedLayerNorm()), new long[] { 4, 3, 6 });
        yield return new TestCaseData("MeanPool", (Func<nn.Module<Tensor, Tensor>>)(() => new MeanPool(1)), new long[] { 4, 3, 6 });
        yield return new TestCaseData("Conv2d k3 s2 p1", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Conv2d(3, 4, 3, stride: 2, padding: 1)), new long[] { 2, 3, 7, 9 });
        yield return new TestCaseData("Conv2d grouped, dilated, without bias", (Func<nn.Module<Tensor, Tensor>>)(() =>
            nn.Conv2d(4, 6, 3, padding: 2, dilation: 2, groups: 2, bias: false)), new long[] { 2, 4, 8, 7 });
        yield return new TestCaseData("Conv2d rectangular", (Func<nn.Module<Tensor, Tensor>>)(() =>
            nn.Conv2d(2, 3, (3, 2), stride: (2, 1), padding: (1, 0))), new long[] { 2, 2, 7, 6 });
        yield return new TestCaseData("Conv2d same, even kernel", (Func<nn.Module<Tensor, Tensor>>)(() =>
            nn.Conv2d(3, 4, 4, TorchSharp.Padding.Same)), new long[] { 2, 3, 6, 5 });
        yield return new TestCaseData("BatchNorm2d", (Func<nn.Module<Tensor, Tensor>>)(() => TrainedBatchNorm(affine: true)), new long[] { 4, 3, 5, 6 });
        yield return new TestCaseData("BatchNorm2d without affine", (Func<nn.Module<Tensor, Tensor>>)(() => TrainedBatchNorm(affine: false)), new long[] { 4, 3, 5, 6 });
        yield return new TestCaseData("Flatten", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Flatten()), new long[] { 2, 3, 4, 5 });
        yield return new TestCaseData("Flatten from axis 2", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Flatten(2)), new long[] { 2, 3, 4, 5 });
        yield return new TestCaseData("Unflatten", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Unflatten(1, new long[] { 3, 4 })), new long[] { 2, 12, 5 });
        yield return new TestCaseData("Dropout2d", (Func<nn.Module<Tensor, Tensor>>)(() => nn.Dropout2d(0.5)), new long[] { 2, 3, 4, 5 });
        yield return new TestCaseData("Sequential MLP", (Func<nn.Module<Tensor, Tensor>>)(() =>
            nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.GELU(), nn.Dropout(0.1), nn.Linear(8, 3), nn.Softmax(-1))), new long[] { 4, 6 });
    }

    [TestCaseSource(nameof(Modules))]
    public void ExportedGraphEqualsTorchSharp(string name, Func<nn.Module<Tensor, Tensor>> create, long[] shape)
    {
        manual_seed(3);
        using var module = create();
        module.eval();
        using var x = randn(shape) * 2;
        using var expected = module.forward(x);

        var g = new OnnxGraphBuilder("test");
        var input = g.AddInput("x", OnnxElementType.Float, shape.Select(d => (long?)d).ToArray());
        var output = OnnxModuleExporter.Export(g, module, input);
        g.AddOutput(output, "y", OnnxElementType.Float, expected.shape.Select(d => (long?)d).ToArray());

        using var session = new InferenceSession(g.ToBytes());
        var feed = new DenseTensorF(x.data<float>().ToArray(), shape.Select(d => (int)d).ToArray());
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("x", feed) });
        var actual = results.First().AsEnumerable<float>().ToArray();
        var want = expected.data<float>().ToArray();
        Assert.That(actual.Length, Is.EqualTo(want.Length), name);
        double scale = Math.Max(1e-6, want.Max(Math.Abs));
        for (int i = 0; i < want.Length; i++)
            Assert.That(Math.Abs(actual[i] - want[i]) / scale, Is.LessThanOrEqualTo(1e-5), $"{name}, element {i}");
    }

    [Test]
    public void UnknownModuleTypeIsRefusedByName()
    {
        using var conv = nn.Conv1d(2, 2, 3);
        var g = new OnnxGraphBuilder("test");
        var ex = Assert.Throws<NotSupportedException>(() => OnnxModuleExporter.Export(g, conv, g.AddInput("x", OnnxElementType.Float, 1, 2, 5)));
        Assert.That(ex!.Message, Does.Contain("Conv1d"));
    }

    [Test]
    public void DuplicateValueNamesAreRefused()
    {
        var g = new OnnxGraphBuilder("test");
        g.AddInput("x", OnnxElementType.Float, 2);
        Assert.Throws<InvalidOperationException>(() => g.AddInput("x", OnnxElementType.Float, 2));
    }

    /// <summary>nn.GELU(approximate: tanh); the enum's namespace differs across TorchSharp versions, so find it by reflection.</summary>
    private static nn.Module<Tensor, Tensor> TanhGelu()
    {
        var factory = typeof(nn).GetMethods().First(m => m.Name == "GELU" && m.GetParameters().Any(p => p.ParameterType.IsEnum));
        var args = factory.GetParameters().Select(p => p.ParameterType.IsEnum ? Enum.Parse(p.ParameterType, "tanh") : p.DefaultValue).ToArray();
        return (nn.Module<Tensor, Tensor>)factory.Invoke(null, args)!;
    }

    private static nn.Module<Tensor, Tensor> TrainedLayerNorm()
    {
        var norm = nn.LayerNorm(6, eps: 1e-3);
        using (no_grad())
        {
            norm.weight!.copy_(rand(6) + 0.5);
            norm.bias!.copy_(randn(6));
        }
        return norm;
    }

    /// <summary>Non-trivial running statistics (five training-mode batches) and affine parameters.</summary>
    private static nn.Module<Tensor, Tensor> TrainedBatchNorm(bool affine)
    {
        var norm = nn.BatchNorm2d(3, eps: 1e-3, affine: affine);
        using (no_grad())
        {
            if (affine)
            {
                norm.weight!.copy_(rand(3) + 0.5);
                norm.bias!.copy_(randn(3));
            }
            for (int i = 0; i < 5; i++)
            {
                using var x = randn(8, 3, 5, 6) * 3 + 2;
                norm.forward(x).Dispose();
            }
        }
        return norm;
    }
}
