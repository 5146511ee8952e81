using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence;

/// <summary>The layer types a <see cref="SequenceTrainer"/> can stack between its encoder and its pooled decoder.</summary>
public enum SequenceBackbone
{
    /// <summary>S4D diagonal state-space layers (<see cref="SequenceTrainer.Options.S4D"/>), O(L log L) in the length.</summary>
    S4D,

    /// <summary>Transformer blocks (<see cref="SequenceTrainer.Options.Transformer"/>): FlashAttention with rotary positions, then a feed-forward layer.</summary>
    Transformer,
}

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
    /// pass (its intermediate outputs, FFT buffers), for <see cref="SequenceNetwork.TrainingBytes"/>.
    /// </summary>
    IReadOnlyList<double> TrainingValuesPerStep(SequenceNetworkShape shape);
}

/// <summary>What every backbone layer is told about the network around it.</summary>
/// <param name="Width">The model dimension H.</param>
/// <param name="Dropout">The dropout rate inside layers.</param>
/// <param name="Bidirectional">Whether layers may look at later steps (no streaming then).</param>
/// <param name="MonarchBlocks">Blocks of the layers' projections as Monarch matrices (<see cref="Layers.Monarch.MonarchLinear.OrDense"/>); 0 keeps them dense.</param>
internal sealed record SequenceNetworkShape(int Width, double Dropout, bool Bidirectional, int MonarchBlocks = 0);

/// <summary>The one place that maps a <see cref="SequenceBackbone"/> to its factory.</summary>
internal static class SequenceBackbones
{
    public static ISequenceBackboneFactory Create(SequenceTrainer.Options options) => options.Backbone switch
    {
        SequenceBackbone.S4D => new S4DBackbone(options.S4D ?? throw new ArgumentNullException(nameof(options), "SequenceTrainer.Options.S4D must not be null for the S4D backbone.")),
        SequenceBackbone.Transformer => new Attention.TransformerBackbone(options.Transformer ?? throw new ArgumentNullException(nameof(options), "SequenceTrainer.Options.Transformer must not be null for the Transformer backbone.")),
        _ => throw new ArgumentOutOfRangeException(nameof(options), options.Backbone, "Unknown SequenceTrainer.Options.Backbone."),
    };
}
