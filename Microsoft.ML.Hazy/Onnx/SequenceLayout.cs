using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Onnx;

/// <summary>
/// The sequence shape a trained model was exported for. <see cref="Length"/> is the fixed number of
/// time steps, or 0 for variable length; then rows reach the ONNX graph zero-padded to
/// <see cref="PaddedValues"/> values with their value count beside them (ML.NET's <c>OnnxTransformer</c>
/// cannot read a variable-size column), and the graph accepts up to <see cref="ExportSteps"/> steps.
/// </summary>
internal sealed record SequenceLayout(int Channels, int Length, int PaddedValues)
{
    public bool IsVariableLength => Length == 0;

    /// <summary>The most time steps one row may have in the exported graph.</summary>
    public int ExportSteps => IsVariableLength ? PaddedValues / Channels : Length;

    /// <summary>The shape of one row as the network sees it: [L, C], with L = -1 for variable length.</summary>
    public long[] RowShape => new long[] { IsVariableLength ? -1 : Length, Channels };
}

/// <summary>
/// A network over sequences [B, L, C] whose forward also receives each row's number of valid steps
/// (rows of a batch are zero-padded at the end to the longest), and that writes its own ONNX graph.
/// </summary>
internal interface ISequenceNetwork
{
    /// <summary>Outputs [B, outputs] from <paramref name="input"/> [B, L, C] and <paramref name="lengths"/> (int64 [B]; null when no row is padded).</summary>
    Tensor forward(Tensor input, Tensor? lengths);

    /// <summary>
    /// Checked before each layer of <see cref="forward"/>, so cancelling takes effect within a long step. The trainer sets it
    /// to the options' <c>CancellationToken</c> for the duration of training and clears it afterwards.
    /// </summary>
    CancellationToken Cancellation { get; set; }

    /// <summary>
    /// Adds the evaluation-mode network on <paramref name="input"/> [B, L, C] (L at most <paramref name="maxLength"/>)
    /// and returns the name of the [B, outputs] result. <paramref name="mask"/> names a float [B, L, 1] tensor that is 1
    /// on valid steps and 0 on padding, or is null when no row is padded.
    /// </summary>
    string ExportOnnx(OnnxGraphBuilder graph, string input, int maxLength, string? mask);
}
