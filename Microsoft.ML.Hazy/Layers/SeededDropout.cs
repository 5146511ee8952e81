using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Layers;

/// <summary>
/// Dropout whose masks come from the training run's generator: per value (as <c>nn.Dropout</c>) or, with
/// <c>channels</c>, per row and channel of a [B, C, ...] input (as <c>nn.Dropout2d</c>). The identity in evaluation.
/// </summary>
internal sealed class SeededDropout : nn.Module<Tensor, Tensor>, IOnnxExportable, ISeededModule
{
    public SeededDropout(double probability, bool channels = false) : base(channels ? "Dropout2d" : "Dropout")
    {
        if (!(probability >= 0 && probability < 1))
            throw new ArgumentOutOfRangeException(nameof(probability), probability, "The dropout probability must be in [0, 1).");
        Probability = probability;
        Channels = channels;
    }

    public double Probability { get; }

    /// <summary>One mask value per row and channel rather than per value.</summary>
    public bool Channels { get; }

    public Generator? Generator { get; set; }

    public void ResetParameters(Generator generator)
    {
    }

    public override Tensor forward(Tensor input)
    {
        if (!training || Probability <= 0)
            return input.alias();
        var maskShape = Channels ? input.shape.Select((n, i) => i < 2 ? n : 1).ToArray() : input.shape;
        return Apply(input, maskShape, Probability, Generator);
    }

    public string ExportOnnx(OnnxGraphBuilder graph, string input) => input;

    /// <summary>x · m / (1 − p) with m ~ Bernoulli(1 − p) of <paramref name="maskShape"/>, broadcast over <paramref name="x"/>.</summary>
    public static Tensor Apply(Tensor x, long[] maskShape, double p, Generator? generator)
    {
        using var keepProbability = (1 - p).ToScalar();
        using var mask = rand(maskShape, x.dtype, x.device, generator: generator);
        mask.lt_(keepProbability).div_(keepProbability);
        return x.mul(mask);
    }
}
