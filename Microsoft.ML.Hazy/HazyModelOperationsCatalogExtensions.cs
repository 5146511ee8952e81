using Microsoft.ML.Hazy.Data;

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
}
