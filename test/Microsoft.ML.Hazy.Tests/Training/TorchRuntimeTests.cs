using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Training;

/// <summary>
/// libtorch's oneDNN convolution returned input gradients read from uninitialised memory on AMD EPYC (wrong values,
/// sometimes NaN, for any batch of two or more rows); with it switched off every shape agrees with float64.
/// </summary>
public sealed class TorchRuntimeTests
{
    [Test]
    public void OneDnnIsSwitchedOffOnLinux()
    {
        Assert.That(TorchRuntime.EnsureInitialized(), OperatingSystem.IsLinux() ? Is.Null : Is.Not.Null);
        if (OperatingSystem.IsLinux())
            Assert.That(TorchRuntime.OneDnnEnabled(), Is.False);
    }

    [TestCase(2, 1, 1, 4, 1, false)]
    [TestCase(2, 2, 3, 4, 1, false)]
    [TestCase(2, 2, 3, 6, 2, false)]
    [TestCase(3, 4, 3, 6, 1, false)]
    [TestCase(3, 4, 8, 6, 1, true)]
    [TestCase(2, 2, 8, 6, 1, true)]
    [TestCase(16, 1, 8, 28, 1, true)]
    public void ConvolutionInputGradientsMatchFloat64(int batch, int inChannels, int outChannels, int side, int stride, bool weightGradientToo)
    {
        TorchRuntime.EnsureInitialized();
        using var scope = NewDisposeScope();
        using var generator = new Generator(7);
        var w = randn(new long[] { outChannels, inChannels, 3, 3 }, generator: generator);
        var x = randn(new long[] { batch, inChannels, side, side }, generator: generator);
        long[] strides = { stride, stride }, padding = { 1, 1 };

        var x64 = x.to(ScalarType.Float64).requires_grad_(true);
        var y64 = nn.functional.conv2d(x64, w.to(ScalarType.Float64), null, strides: strides, padding: padding);
        var g = randn(y64.shape, generator: generator);
        var expected = autograd.grad(new[] { y64 }, new[] { x64 }, new[] { g.to(ScalarType.Float64) })[0];
        // float32 bound: each input gradient sums 9·C_out products |w|·|g|, each rounded with relative error 2⁻²⁴.
        var absolute = nn.functional.conv_transpose2d(g.abs().to(ScalarType.Float64), w.abs().to(ScalarType.Float64), null,
            strides: strides, padding: padding, output_padding: new long[] { (side + 1) % stride, (side + 1) % stride });
        var bound = absolute * (9.0 * outChannels * Math.Pow(2, -24) * 4) + 1e-6;

        for (int repeat = 0; repeat < 3; repeat++)
        {
            var input = x.detach().requires_grad_(true);
            var weight = w.detach().requires_grad_(weightGradientToo);
            var y = nn.functional.conv2d(input, weight, null, strides: strides, padding: padding);
            Tensor actual;
            if (weightGradientToo)
            {
                (y * g).sum().backward();
                actual = input.grad!;
            }
            else
            {
                actual = autograd.grad(new[] { y }, new[] { input }, new[] { g })[0];
            }
            var excess = (actual.to(ScalarType.Float64) - expected).abs() - bound;
            Assert.That(actual.isfinite().all().item<bool>(), Is.True, "finite gradients");
            Assert.That(excess.max().item<double>(), Is.LessThanOrEqualTo(0), $"repeat {repeat}: the largest error beyond the float32 bound");
        }
    }
}
