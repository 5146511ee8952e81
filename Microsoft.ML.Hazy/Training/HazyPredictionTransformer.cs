using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>One epoch of a finished training run.</summary>
/// <param name="Epoch">The epoch, from 1.</param>
/// <param name="TrainLoss">Mean training loss.</param>
/// <param name="ValidationLoss">Validation loss, when a validation set was given.</param>
/// <param name="ValidationMetric">Validation accuracy (classification) or RMSE (regression).</param>
/// <param name="Seconds">Wall-clock seconds the epoch took.</param>
public sealed record TrainingEpoch(int Epoch, double TrainLoss, double? ValidationLoss, double? ValidationMetric, double Seconds);

/// <summary>
/// The model a Hazy trainer returns. Scoring, <see cref="ITransformer.GetOutputSchema"/>, row mapping and
/// <c>mlContext.Model.Save</c> go to <see cref="ScoringChain"/>: a standard ML.NET chain around
/// <c>OnnxTransformer</c>, so a saved model loads with plain <c>mlContext.Model.Load</c>. The trained
/// TorchSharp network stays available as <see cref="Network"/> for gradients and continued training.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// | Output column | Type | Present for |
/// | -- | -- | -- |
/// | `Score` | Single, or a vector of Single (class probabilities) | all tasks |
/// | `Probability` | Single | binary classification |
/// | `PredictedLabel` | Boolean, or a key with the training label's values | classification |
/// | `Embedding` (or the trainer's output column) | known-size vector of Single, unit L2 norm when normalised | embedding models, instead of the columns above |
/// ]]></format>
/// <para>
/// It is an <see cref="ISingleFeaturePredictionTransformer{TModel}"/> of <see cref="HazyModelParameters"/>, so ML.NET's
/// <c>PermutationFeatureImportance</c> (multiclass, binary and regression catalogs) takes it directly.
/// </para>
/// <para>
/// Dispose it when done: that frees the TorchSharp network (scoring through <see cref="ScoringChain"/> keeps working).
/// A <see cref="TransformerChain{TLastTransformer}"/> disposes the transformers it holds, so disposing the chain a
/// pipeline's <c>Fit</c> returns, or each fold model <c>CrossValidate</c> returns, frees the network too.
/// </para>
/// </remarks>
public sealed class HazyPredictionTransformer : ISingleFeaturePredictionTransformer<HazyModelParameters>, ICanSaveModel, IDisposable
{
    private readonly object _networkLock = new();
    private nn.Module<Tensor, Tensor>? _network;
    private Func<nn.Module<Tensor, Tensor>>? _loadNetwork;
    private HazyModelParameters? _model;
    private bool _disposed;

    internal HazyPredictionTransformer(TransformerChain<ITransformer> scoringChain, nn.Module<Tensor, Tensor> network,
        PredictionKind kind, string featureColumnName, long[] rowShape, LabelKeyValues? labels, IReadOnlyList<TrainingEpoch> history, int seed,
        SequenceLayout? sequence = null)
        : this(scoringChain, network, OutputHead.For(kind, labels), featureColumnName, rowShape, history, seed, sequence)
    {
    }

    internal HazyPredictionTransformer(TransformerChain<ITransformer> scoringChain, nn.Module<Tensor, Tensor> network,
        OutputHead head, string featureColumnName, long[] rowShape, IReadOnlyList<TrainingEpoch> history, int seed,
        SequenceLayout? sequence = null)
    {
        Sequence = sequence;
        ScoringChain = scoringChain;
        _network = network;
        Head = head;
        FeatureColumnName = featureColumnName;
        RowShape = rowShape;
        TrainingHistory = history;
        Seed = seed;
    }

    /// <summary>
    /// A model restored from a file saved with its weights: <paramref name="loadNetwork"/> builds the network the first time
    /// <see cref="Network"/> is read, so scoring, which goes to <paramref name="scoringChain"/>, never touches TorchSharp.
    /// </summary>
    internal HazyPredictionTransformer(TransformerChain<ITransformer> scoringChain, Func<nn.Module<Tensor, Tensor>> loadNetwork,
        OutputHead head, string featureColumnName, long[] rowShape, IReadOnlyList<TrainingEpoch> history, int seed,
        SequenceLayout? sequence = null)
        : this(scoringChain, network: null!, head, featureColumnName, rowShape, history, seed, sequence) => _loadNetwork = loadNetwork;

    /// <summary>The task's output head: its columns, its ONNX outputs and how the network's output becomes the score.</summary>
    internal OutputHead Head { get; }

    /// <summary>The task, which fixes the output columns.</summary>
    public PredictionKind Kind => Head.Kind;

    /// <summary>The feature column the model reads.</summary>
    public string FeatureColumnName { get; }

    /// <summary>The feature column's type: a vector of Single of the row's size (variable size for a variable-length sequence model).</summary>
    public DataViewType FeatureColumnType => Sequence is { IsVariableLength: true }
        ? new VectorDataViewType(NumberDataViewType.Single)
        : new VectorDataViewType(NumberDataViewType.Single, (int)RowShape.Aggregate(1L, (a, b) => a * b));

    /// <summary>The model: task, row shape, classes and the trained network.</summary>
    public HazyModelParameters Model => _model ??= new HazyModelParameters(Network, Kind, RowShape, ClassNames);

    /// <summary>
    /// The shape of one row's features as the network sees them: [D] for a vector model, [L, C] for a
    /// sequence model reading L time steps of C channels (time-major), with L = -1 for variable length.
    /// </summary>
    public IReadOnlyList<long> RowShape { get; }

    /// <summary>The sequence layout of a sequence model; null for a vector model.</summary>
    internal SequenceLayout? Sequence { get; }

    /// <summary>The trained TorchSharp network (evaluation mode). Its output is logits (classification) or the prediction.</summary>
    /// <remarks>
    /// A model loaded with <c>mlContext.Hazy().LoadModel</c> from a file saved with its weights builds the network on first
    /// access (this needs TorchSharp's native libraries; scoring does not).
    /// </remarks>
    /// <exception cref="ObjectDisposedException">The network was never built and the transformer was disposed.</exception>
    public nn.Module<Tensor, Tensor> Network
    {
        get
        {
            if (_network is { } network)
                return network;
            lock (_networkLock)
            {
                if (_network is null)
                {
                    ObjectDisposedException.ThrowIf(_disposed, this);
                    _network = _loadNetwork!();
                    _loadNetwork = null;
                }
                return _network;
            }
        }
    }

    /// <summary>The key values of the label (multiclass), in class-index order; null for other tasks.</summary>
    internal LabelKeyValues? Labels => Head.LabelKeys;

    /// <summary>The standard ML.NET chain that scores and is saved.</summary>
    public TransformerChain<ITransformer> ScoringChain { get; }

    /// <summary>Per-epoch losses and metrics of the training run.</summary>
    public IReadOnlyList<TrainingEpoch> TrainingHistory { get; }

    /// <summary>The seed the run used (weights, dropout, shuffling).</summary>
    public int Seed { get; }

    /// <summary>Class names in class-index order (multiclass), so index i of <c>Score</c> is <c>ClassNames[i]</c>.</summary>
    public IReadOnlyList<string> ClassNames => Head.LabelKeys?.Names() ?? Array.Empty<string>();

    /// <inheritdoc/>
    public bool IsRowToRowMapper => ((ITransformer)ScoringChain).IsRowToRowMapper;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => ScoringChain.GetOutputSchema(inputSchema);

    /// <inheritdoc/>
    /// <remarks>A <c>PredictionEngine</c> scores through this mapper, so it checks the feature column as <see cref="Transform"/> does.</remarks>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        CheckFeatureColumn(inputSchema);
        return ((ITransformer)ScoringChain).GetRowToRowMapper(inputSchema);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// A variable-length sequence model reads the feature column once here and throws <see cref="InvalidOperationException"/>
    /// naming the first row longer than it accepts, so the message is not hidden inside ML.NET's worker-thread exception later.
    /// </remarks>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckFeatureColumn(input.Schema);
        if (Sequence is { IsVariableLength: true } layout)
            ScoringInputGuard.CheckRowLengths(input, FeatureColumnName, layout.Channels, layout.PaddedValues);
        return ScoringChain.Transform(input);
    }

    private void CheckFeatureColumn(DataViewSchema schema)
    {
        if (Sequence is { IsVariableLength: true })
            SchemaChecks.FloatVectorColumn(schema, FeatureColumnName, requireKnownSize: false);
        else
            SchemaChecks.FloatVectorColumn(schema, FeatureColumnName, requireKnownSize: true, expectedSize: (int)RowShape.Aggregate(1L, (a, b) => a * b));
    }

    /// <summary>Saves the standard ML.NET chain; loading it needs no Hazy API.</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)ScoringChain).Save(ctx);

    /// <summary>
    /// Writes the model as an ONNX file with a leading batch dimension: input named after the feature column,
    /// outputs <c>Score</c>, and for classifiers <c>PredictedLabel</c> (int64 class index, or Boolean) and
    /// <c>Probability</c> (binary); an embedding model outputs its embedding column instead. It runs in ONNX Runtime anywhere,
    /// on any of its execution providers.
    /// </summary>
    /// <remarks>
    /// A sequence model reads the flat time-major rows [batch, L·C]. A variable-length one reads rows zero-padded
    /// to the longest of the batch, [batch, T·C], and a second input <c>Steps</c> (int64 [batch]) with each row's
    /// number of time steps; a row of 0 steps scores as one all-zero step (the padded batch needs at least one step).
    /// ML.NET's <c>mlContext.Model.ConvertToOnnx</c> cannot export the <c>OnnxTransformer</c> the scoring chain wraps and
    /// throws <see cref="InvalidOperationException"/> for this model; this method is its ONNX export.
    /// </remarks>
    /// <exception cref="ObjectDisposedException">The transformer was disposed, which freed the network the graph is built from.</exception>
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
    /// <exception cref="ObjectDisposedException">The transformer was disposed; the file is not touched.</exception>
    public void SaveAsOnnx(string filePath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(filePath);
        AtomicFile.WriteAllBytes(filePath, BuildOnnx());
    }

    private byte[] BuildOnnx()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using (no_grad())
            return OnnxScoringBridge.BuildGraph(Network, FeatureColumnName, RowShape.ToArray(), Head, batched: true, Sequence);
    }

    /// <summary>Scores rows with the TorchSharp network in batches: the model's <c>Score</c> (or embedding) for each row.</summary>
    internal float[][] ScoreWithTorch(IDataView data, int batchSize = 256)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var batcher = new DataViewBatcher(data, FeatureColumnName, null, LabelKind.Single, Sequence?.Channels ?? 0);
        var device = Network.parameters().First().device;
        var forward = SupervisedTrainer.Forward(Network);
        var result = new List<float[]>();
        Network.eval();
        using (no_grad())
        {
            foreach (var batch in batcher.GetBatches(batchSize, null, device))
            {
                using var scope = NewDisposeScope();
                using var _ = batch;
                var output = forward(batch);
                var score = Head.Score(output);
                var cpu = score.cpu().to(ScalarType.Float32);
                int width = (int)cpu.shape[1];
                var flat = cpu.data<float>().ToArray();
                for (int i = 0; i < batch.Count; i++)
                    result.Add(flat.AsSpan(i * width, width).ToArray());
            }
        }
        return result.ToArray();
    }

    /// <summary>Frees the TorchSharp network.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        lock (_networkLock)
        {
            _disposed = true;
            _network?.Dispose();
        }
    }
}
