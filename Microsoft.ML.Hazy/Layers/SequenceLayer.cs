using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Layers;

// The contract between a sequence network (Sequence/) and its backbones (Sequence/S4D, Sequence/Attention): it lives
// here, below both, so that the network imports the backbones and the backbones import only Layers/, never each other.

/// <summary>
/// The hook a backbone implements: one mixing layer of a sequence model, mapping [B, L, H] to [B, L, H]. The
/// network wraps every layer in a residual block (normalisation, dropout) between a shared encoder and
/// pooled decoder, so a new backbone needs only its layers and a <see cref="ISequenceBackboneFactory"/>.
/// Implementations are <c>nn.Module&lt;Tensor, Tensor&gt;</c> whose one-argument forward is <c>Forward(x, null)</c>.
/// </summary>
internal interface ISequenceLayer
{
    /// <summary>
    /// Maps <paramref name="input"/> [B, L, H] to [B, L, H]. <paramref name="mask"/> is a float [B, L, 1] tensor,
    /// 1 on valid steps and 0 on the zero padding after a shorter row's end, or null when no row is padded;
    /// outputs at valid steps must not depend on padded ones.
    /// </summary>
    Tensor Forward(Tensor input, Tensor? mask);

    /// <summary>
    /// Adds the layer in evaluation mode to an ONNX graph: <paramref name="input"/> is [B, L, H] with L at most
    /// <paramref name="maxLength"/> (the per-row graph has B = 1 and no padding); <paramref name="mask"/> as in
    /// <see cref="Forward"/>, or null. Returns the output's name.
    /// </summary>
    string ExportOnnx(OnnxGraphBuilder graph, string input, string? mask, int maxLength);

    /// <summary>
    /// A recurrent view of the layer for streaming, one time step at a time with its state, giving the same
    /// outputs as <see cref="Forward"/> on the whole sequence; null when the layer cannot run causally.
    /// </summary>
    ISequenceLayerStepper? CreateStepper(int batchSize);
}

/// <summary>The state of one layer while streaming.</summary>
internal interface ISequenceLayerStepper : IDisposable
{
    /// <summary>Consumes one time step [B, H] and returns the layer's output [B, H] at that step.</summary>
    Tensor Step(Tensor input);
}

/// <summary>Creates the layers of one backbone, and says which of their parameters need their own optimizer group.</summary>
internal interface ISequenceBackboneFactory
{
    /// <summary>
    /// The layers of block <paramref name="index"/> (a Transformer returns attention then feed-forward), each an
    /// <c>nn.Module&lt;Tensor, Tensor&gt;</c> implementing <see cref="ISequenceLayer"/>.
    /// </summary>
    IReadOnlyList<nn.Module<Tensor, Tensor>> CreateLayers(int index, SequenceNetworkShape shape);

    /// <summary>Parameter groups with names relative to one layer (<c>ssm.</c>); the network prefixes the layer's path.</summary>
    IReadOnlyList<ParameterGroupOptions> LayerParameterGroups { get; }

    /// <summary>
    /// For each layer of a block, the float values per row and time step that its training forward keeps for the backward
    /// pass (its intermediate outputs, FFT buffers), for the network's training-memory estimate.
    /// </summary>
    IReadOnlyList<double> TrainingValuesPerStep(SequenceNetworkShape shape);
}

/// <summary>What every backbone layer is told about the network around it.</summary>
/// <param name="Width">The model dimension H.</param>
/// <param name="Dropout">The dropout rate inside layers.</param>
/// <param name="Bidirectional">Whether layers may look at later steps (no streaming then).</param>
/// <param name="MonarchBlocks">Blocks of the layers' projections as Monarch matrices (<see cref="Monarch.MonarchLinear.OrDense"/>); 0 keeps them dense.</param>
internal sealed record SequenceNetworkShape(int Width, double Dropout, bool Bidirectional, int MonarchBlocks = 0);

/// <summary>Dropout with one mask per row and feature, shared by all time steps (the reference's DropoutNd).</summary>
internal static class TiedDropout
{
    /// <summary>x · m / (1 − p) with m ~ Bernoulli(1 − p) of shape [B, 1, H], drawn from <paramref name="generator"/>.</summary>
    public static Tensor Apply(Tensor x, double p, bool training, Generator? generator) =>
        !training || p <= 0 ? x : SeededDropout.Apply(x, new[] { x.shape[0], 1, x.shape[2] }, p, generator);
}

