using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Persistence;

namespace Microsoft.ML;

/// <summary>Model saving that never leaves a truncated or half-written file behind.</summary>
public static class HazyModelOperationsCatalogExtensions
{
    /// <summary>
    /// Saves <paramref name="model"/> and its input schema like <see cref="ModelOperationsCatalog.Save(ITransformer, DataViewSchema, string)"/>,
    /// but replaces <paramref name="filePath"/> only once the whole model has been written: the model goes to a temporary file
    /// in the same folder, which is then renamed over the target. When saving fails (a transformer that cannot be saved,
    /// a full disk, cancellation), an existing file at <paramref name="filePath"/> is left as it was and no temporary file remains.
    /// </summary>
    /// <param name="catalog">The model operations catalog, <c>mlContext.Model</c>.</param>
    /// <param name="model">The trained model.</param>
    /// <param name="inputSchema">The schema of the model's input, or null.</param>
    /// <param name="filePath">The file to write; its folder must exist.</param>
    /// <exception cref="NotSupportedException">A transformer in <paramref name="model"/> cannot be saved; the file is not touched.</exception>
    public static void SaveAtomically(this ModelOperationsCatalog catalog, ITransformer model, DataViewSchema? inputSchema, string filePath)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(filePath);
        AtomicFile.Write(filePath, stream => catalog.Save(model, inputSchema, stream));
    }

    /// <summary>
    /// Saves <paramref name="model"/> atomically as <see cref="SaveAtomically(ModelOperationsCatalog, ITransformer, DataViewSchema?, string)"/>
    /// does and, with <paramref name="includeWeights"/>, also the TorchSharp weights of every Hazy model in it, so that the model
    /// <c>mlContext.Hazy().LoadModel</c> returns can be attributed (<c>mlContext.Hazy().Interpretation.Attribution</c>), streamed
    /// (<c>SequenceStreamingPredictor</c>) and trained on (<c>mlContext.Hazy().ContinueTraining</c>).
    /// </summary>
    /// <remarks>
    /// The weights are extra entries in the zip (<c>Hazy/Networks/NNN/Model.json</c> and <c>Weights.bin</c>, a TorchSharp state
    /// dict) next to the entries ML.NET writes, which are unchanged: <c>mlContext.Model.Load</c> loads and scores the file as
    /// before and ignores the weights, and scoring a model loaded either way needs ML.NET, ONNX Runtime and this assembly, never
    /// libtorch. <c>mlContext.Hazy().LoadModel</c> reads the weights into TorchSharp only when a network is first asked for.
    /// </remarks>
    /// <param name="catalog">The model operations catalog, <c>mlContext.Model</c>.</param>
    /// <param name="model">The trained model: a Hazy model, or a chain holding Hazy models among other transformers.</param>
    /// <param name="inputSchema">The schema of the model's input, or null.</param>
    /// <param name="filePath">The file to write; its folder must exist.</param>
    /// <param name="includeWeights">Whether to save the Hazy models' TorchSharp weights too; false saves exactly what ML.NET saves.</param>
    /// <exception cref="NotSupportedException">A transformer in <paramref name="model"/> cannot be saved, or a Hazy model's network cannot
    /// describe its architecture; the file is not touched.</exception>
    public static void SaveAtomically(this ModelOperationsCatalog catalog, ITransformer model, DataViewSchema? inputSchema, string filePath, bool includeWeights)
    {
        if (!includeWeights)
        {
            catalog.SaveAtomically(model, inputSchema, filePath);
            return;
        }
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(filePath);
        AtomicFile.Write(filePath, stream => ModelArchive.Save(catalog, model, inputSchema, stream));
    }
}
