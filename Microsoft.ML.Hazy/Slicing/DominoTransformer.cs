using Microsoft.Extensions.AI;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Slicing;

/// <summary>
/// A fitted Domino slicer. Scoring, <see cref="ITransformer.GetOutputSchema"/>, row mapping and <c>mlContext.Model.Save</c>
/// go to <see cref="ScoringChain"/>: built-in ML.NET transformers around an <c>OnnxTransformer</c> holding the mixture's
/// posterior as a graph. The fitted parameters (<see cref="Model"/>) stay available for reports and descriptions.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// | Output column | Type |
/// | -- | -- |
/// | `SliceProbabilities` | vector of Single, one per slice |
/// | `Slice` | key whose values are the slice indices as text: "0" … "n−1" |
///
/// A row whose embedding holds NaN or an infinity gets NaN slice probabilities and a missing `Slice` key (0), not a slice.
/// ]]></format>
/// </remarks>
public sealed class DominoTransformer : ITransformer, ICanSaveModel
{
    private readonly DominoColumns _columns;
    private readonly DominoEstimator.Options _options;

    internal DominoTransformer(TransformerChain<ITransformer> chain, DominoModelParameters model, DominoColumns columns,
        DominoEstimator.Options options, DominoReport report)
    {
        ScoringChain = chain;
        Model = model;
        _columns = columns;
        _options = options;
        TrainingReport = report;
    }

    /// <summary>The fitted mixture and the components chosen as slices.</summary>
    public DominoModelParameters Model { get; }

    /// <summary>The report of the slices on the data given to <c>Fit</c>.</summary>
    public DominoReport TrainingReport { get; }

    /// <summary>The standard ML.NET chain that scores and is saved.</summary>
    public TransformerChain<ITransformer> ScoringChain { get; }

    /// <summary>The embedding column read.</summary>
    public string EmbeddingColumnName => _columns.Embedding;

    /// <summary>The label column read.</summary>
    public string LabelColumnName => _columns.Label;

    /// <summary>The prediction column read.</summary>
    public string PredictionColumnName => _columns.Prediction;

    /// <summary>Class names in class-index order (the label's key values, False/True, or 0 … c−1).</summary>
    public IReadOnlyList<string> ClassNames => Array.AsReadOnly(_columns.ClassNames);

    /// <summary>The number of slices.</summary>
    public int NumberOfSlices => Model.SliceComponents.Count;

    /// <inheritdoc/>
    public bool IsRowToRowMapper => ((ITransformer)ScoringChain).IsRowToRowMapper;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        CheckInput(inputSchema);
        return ScoringChain.GetOutputSchema(inputSchema);
    }

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        CheckInput(inputSchema);
        return ((ITransformer)ScoringChain).GetRowToRowMapper(inputSchema);
    }

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckInput(input.Schema);
        return ScoringChain.Transform(input);
    }

    /// <summary>Saves the standard ML.NET chain; loading it needs no Hazy API beyond the registered column mappings.</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)ScoringChain).Save(ctx);

    /// <summary>
    /// Writes the slicer as an ONNX file with a leading batch dimension: inputs the embedding column and, when scoring uses
    /// them, <c>__DominoLabelVector</c> (the label as a float vector: one-hot of a key, or the scalar value) and the prediction
    /// (a probability vector, or <c>__DominoPredictionVector</c> holding a binary probability); outputs the slice
    /// probabilities and the int64 slice index under the output column names (−1 for a row whose embedding is not finite).
    /// </summary>
    public void SaveAsOnnx(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream.Write(BuildOnnx());
    }

    /// <summary>
    /// Writes the ONNX file of <see cref="SaveAsOnnx(Stream)"/> to <paramref name="filePath"/>, replacing an existing file only
    /// once the whole graph is written (a temporary file in the same folder is renamed into place).
    /// </summary>
    /// <param name="filePath">The file to write; its folder must exist.</param>
    public void SaveAsOnnx(string filePath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(filePath);
        AtomicFile.WriteAllBytes(filePath, BuildOnnx());
    }

    private byte[] BuildOnnx() => DominoOnnx.Build(Model, Spec(_options, _columns.LabelForm, _columns.PredictionIsVector, _columns.Prediction), batched: true);

    /// <summary>
    /// Slice statistics on <paramref name="data"/> (which needs the embedding, label and prediction columns): per slice its
    /// size, the model's accuracy inside against outside, the dominant label and prediction, and the most probable rows.
    /// </summary>
    /// <param name="data">The rows to report on.</param>
    /// <param name="topExamples">Rows listed per slice.</param>
    /// <param name="cancellationToken">Cancels reading the rows.</param>
    public DominoReport CreateReport(IDataView data, int topExamples = 10, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(topExamples);
        var rows = Read(data, cancellationToken);
        return DominoReport.Create(SliceProbabilities(rows), rows, Model, _columns.ClassNames, topExamples);
    }

    /// <summary>
    /// Slice probabilities computed in .NET (double precision) for every row of <paramref name="data"/>: one array per row,
    /// one value per slice. The ONNX scoring chain computes the same values in the <c>SliceProbabilities</c> column.
    /// </summary>
    public double[][] PredictSliceProbabilities(IDataView data, CancellationToken cancellationToken = default)
    {
        var rows = Read(data, cancellationToken);
        var flat = SliceProbabilities(rows);
        int m = NumberOfSlices;
        return Enumerable.Range(0, rows.Count).Select(i => flat.AsSpan(i * m, m).ToArray()).ToArray();
    }

    /// <summary>
    /// Ranks candidate phrases for one slice by how well their text embeddings point from a reference mean to the
    /// slice's mean embedding (or, with <see cref="DominoDescribeMethod.Correlation"/>, by the correlation of slice
    /// probability with image–text similarity).
    /// </summary>
    /// <param name="data">Rows with the embedding, label and prediction columns (typically the data the slicer was fitted on).</param>
    /// <param name="slice">The slice, 0 … <see cref="NumberOfSlices"/> − 1.</param>
    /// <param name="textEmbedder">Embeds text into the same space as the embedding column (a cross-modal encoder).</param>
    /// <param name="candidates">The phrases to rank, e.g. from <see cref="DominoDescriber.CandidatePhrases"/>.</param>
    /// <param name="options">Method, reference, how many phrases to return.</param>
    /// <param name="cancellationToken">Cancels reading and embedding.</param>
    /// <returns>The best phrases, best first.</returns>
    public async Task<IReadOnlyList<SliceDescription>> DescribeAsync(IDataView data, int slice,
        IEmbeddingGenerator<string, Embedding<float>> textEmbedder, IEnumerable<string> candidates,
        DominoDescribeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(textEmbedder);
        ArgumentNullException.ThrowIfNull(candidates);
        if (slice < 0 || slice >= NumberOfSlices)
            throw new ArgumentOutOfRangeException(nameof(slice), slice, $"Expected a slice from 0 to {NumberOfSlices - 1}.");
        options ??= new DominoDescribeOptions();
        var phrases = candidates.ToArray();
        var rows = Read(data, cancellationToken);
        var probabilities = SliceProbabilities(rows);
        int m = NumberOfSlices;
        var p = new double[rows.Count];
        for (int i = 0; i < rows.Count; i++)
            p[i] = probabilities[(long)i * m + slice];
        var text = await DominoDescriber.EmbedAsync(textEmbedder, phrases, Model.EmbeddingSize, _columns.Embedding, options.BatchSize, cancellationToken).ConfigureAwait(false);
        return DominoDescriber.Rank(rows.Embeddings, Model.EmbeddingSize, rows.Labels, Model.Classes, p, phrases, text, options, $"slice {slice}");
    }

    internal static DominoGraphSpec Spec(DominoEstimator.Options o, DominoLabelForm labelForm, bool predictionIsVector, string prediction) =>
        new(o.EmbeddingColumnName, DominoColumns.LabelVector, labelForm, predictionIsVector ? prediction : DominoColumns.PredictionVector, predictionIsVector,
            o.UseLabelsAndPredictionsWhenScoring, o.SliceProbabilitiesColumnName, ScalarColumns.PredictedVector);

    /// <summary>The built-in estimators that serve the per-row graph.</summary>
    internal static IEstimator<ITransformer> BuildChain(DominoModelParameters model, DominoColumns columns, DominoEstimator.Options o, HazyEnvironment env) =>
        ScoringEstimator(DominoOnnx.Build(model, Spec(o, columns.LabelForm, columns.PredictionIsVector, columns.Prediction), batched: false),
            o, columns.LabelForm, columns.PredictionIsVector, model.SliceComponents.Count, env.GpuDeviceId, env.FallbackToCpu);

    /// <summary>The scoring chain of a stand-in model, for the output schema before fitting.</summary>
    internal static IEstimator<ITransformer> PlaceholderChain(DominoEstimator.Options o, DominoLabelForm labelForm, bool predictionIsVector)
    {
        int classes = 2, k = Math.Max(o.NumberOfComponents, o.NumberOfSlices);
        var mixture = new MixtureParameters(k, 1, classes);
        Array.Fill(mixture.Weights, 1.0 / k);
        Array.Fill(mixture.Variances, 1.0);
        Array.Fill(mixture.LabelProbabilities, 0.5);
        Array.Fill(mixture.PredictionProbabilities, 0.5);
        var fit = new MixtureFit(mixture, 0, 0, true, Array.Empty<double>(), Array.Empty<double>());
        var model = new DominoModelParameters(null, mixture, Enumerable.Range(0, o.NumberOfSlices).ToArray(), o.LabelWeight, o.PredictionWeight, fit, 1);
        var graph = DominoOnnx.Build(model, Spec(o, labelForm, predictionIsVector, o.PredictionColumnName), batched: false);
        return ScoringEstimator(graph, o, labelForm, predictionIsVector, o.NumberOfSlices, null, true);
    }

    private static IEstimator<ITransformer> ScoringEstimator(byte[] rowGraph, DominoEstimator.Options o, DominoLabelForm labelForm, bool predictionIsVector,
        int slices, int? gpuDeviceId, bool fallbackToCpu)
    {
        var ml = new MLContext();
        var inputs = new List<string> { o.EmbeddingColumnName };
        var temporary = new List<string>();
        IEstimator<ITransformer>? chain = null;
        if (o.UseLabelsAndPredictionsWhenScoring)
        {
            chain = DominoColumns.InputTransforms(ml, o.LabelColumnName, o.PredictionColumnName, labelForm, predictionIsVector);
            temporary.AddRange(DominoColumns.TemporaryColumns(labelForm, predictionIsVector));
            if (o.LabelWeight != 0)
                inputs.Add(DominoColumns.LabelVector);
            if (o.PredictionWeight != 0)
                inputs.Add(predictionIsVector ? o.PredictionColumnName : DominoColumns.PredictionVector);
        }
        var onnx = ml.Transforms.ApplyOnnxModel(new[] { o.SliceProbabilitiesColumnName, ScalarColumns.PredictedVector }, inputs.ToArray(),
            new MemoryStream(rowGraph), gpuDeviceId, fallbackToCpu);
        var keys = LabelKeyValues.FromValues(Enumerable.Range(0, slices).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        IEstimator<ITransformer> tail = onnx.Append(OnnxScoringBridge.PredictedKey(ml, keys, o.SliceColumnName));
        if (temporary.Count > 0)
            tail = tail.Append(ml.Transforms.DropColumns(temporary.ToArray()));
        return chain is null ? tail : chain.Append(tail);
    }

    private DominoRows Read(IDataView data, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(data);
        var columns = DominoColumns.FromSchema(data.Schema, _columns.Embedding, _columns.Label, _columns.Prediction, _columns);
        return columns.Read(data, cancellationToken);
    }

    private double[] SliceProbabilities(DominoRows rows) =>
        Model.SliceProbabilities(Model.Responsibilities(rows, _options.UseLabelsAndPredictionsWhenScoring), rows.Count);

    private void CheckInput(DataViewSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        if (_options.UseLabelsAndPredictionsWhenScoring)
            DominoColumns.FromSchema(schema, _columns.Embedding, _columns.Label, _columns.Prediction, _columns);
        else
            Data.SchemaChecks.FloatVectorColumn(schema, _columns.Embedding, requireKnownSize: true, expectedSize: _columns.EmbeddingSize);
    }
}
