using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>Builds a network for <paramref name="inputSize"/> features and <paramref name="outputSize"/> outputs.</summary>
internal delegate nn.Module<Tensor, Tensor> NetworkFactory(int inputSize, int outputSize);

/// <summary>After <paramref name="AfterEpochs"/> epochs, replace the network by <paramref name="Convert"/>(network) and train on.</summary>
internal sealed record NetworkSwitch(int AfterEpochs, Func<nn.Module<Tensor, Tensor>, nn.Module<Tensor, Tensor>> Convert, string Description);

/// <summary>
/// What is exported after training when it differs from what was trained: the network the model keeps (for example an
/// encoder without the classifier it was trained through, which the delegate disposes) and the head that serves it.
/// </summary>
internal delegate (nn.Module<Tensor, Tensor> Network, OutputHead Head) ScoringExport(nn.Module<Tensor, Tensor> trained);

/// <summary>
/// What every supervised Hazy trainer does around its network: check the columns, train with the shared
/// loop, export to ONNX and wrap the standard ML.NET scoring chain. A trainer contributes only its network.
/// </summary>
internal static class SupervisedTrainer
{
    /// <remarks>
    /// The factory's network is initialised from the run's seed unless <paramref name="pretrained"/> says it already holds
    /// weights (fine-tuning).
    /// With <paramref name="sequence"/> the feature column is read as time-major steps of its channels
    /// (batches [B, L, C] with each row's length), the factory gets the channel count as input size, and a
    /// network that is an <see cref="ISequenceNetwork"/> receives the lengths.
    /// </remarks>
    public static HazyPredictionTransformer Fit(HazyEnvironment env, string componentName, HazyTrainerOptions options,
        PredictionKind kind, IDataView input, NetworkFactory createNetwork, NetworkSwitch? networkSwitch = null, SequenceInput? sequence = null, bool pretrained = false) =>
        Fit(env, componentName, options, OutputHead.For(kind), input, createNetwork, networkSwitch, sequence, pretrained);

    /// <remarks>
    /// The network is trained with <paramref name="objective"/> (default: the head's loss of the network's output) and
    /// validated with the head's loss and metric; <paramref name="export"/> chooses what is exported when it is not the
    /// trained network with <paramref name="head"/>. With <see cref="HazyTrainerOptions.ExampleWeightColumnName"/> every batch
    /// carries the weights as <see cref="TensorBatch.ExampleWeight"/>.
    /// </remarks>
    public static HazyPredictionTransformer Fit(HazyEnvironment env, string componentName, HazyTrainerOptions options,
        OutputHead head, IDataView input, NetworkFactory createNetwork, NetworkSwitch? networkSwitch = null, SequenceInput? sequence = null, bool pretrained = false,
        ITrainingObjective? objective = null, ScoringExport? export = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(head);
        var host = env.Env.Register(componentName);
        using var ch = host.Start("Training");
        string? labelColumn = head.Label is null ? null : options.LabelColumnName;
        var labelKind = head.Label ?? LabelKind.Single;
        int seed = options.Seed ?? host.Rand.Next();
        var trainData = input;
        if (labelColumn != null)
            (options, trainData) = ValidationSplit.Apply(options, input, labelKind, seed, ch);
        // A penalty (TrainingPenaltyOptions) wraps the objective and reads its own columns (a mask) in the training batches.
        IReadOnlyList<BatchColumn>? penaltyColumns = null;
        if (options.Penalty is { } penalty)
        {
            var features = SchemaChecks.FloatVectorColumn(input.Schema, options.FeatureColumnName, requireKnownSize: sequence is null);
            var labelled = labelColumn != null ? head.ForTrainingLabel(input.Schema[labelColumn]) : head;
            (objective, penaltyColumns) = penalty.CreateObjective(objective ?? Objectives.Supervised(labelled), labelled, input.Schema,
                options.FeatureColumnName, ((VectorDataViewType)features.Type).Size, sequence?.Channels ?? 0);
        }
        var train = new DataViewBatcher(trainData, options.FeatureColumnName, labelColumn, labelKind, sequence?.Channels ?? 0,
            columns: (WeightColumn(options, input.Schema) ?? Array.Empty<BatchColumn>()).Concat(penaltyColumns ?? Array.Empty<BatchColumn>()).ToArray());
        options = TrainingBudget.Apply(options, train.CountRows(), ch);
        // The exported length covers the held-out rows too.
        var layout = sequence is null ? null : Layout(ReferenceEquals(trainData, input) ? train
            : new DataViewBatcher(input, options.FeatureColumnName, labelColumn, labelKind, sequence.Channels), sequence);
        if (sequence?.TrainingBytes is { } trainingBytes)
            MemoryBudget.CheckSequenceStep(trainingBytes, options, train, sequence.Channels);
        int inputSize = sequence?.Channels ?? train.FeatureSize;
        if (labelColumn != null)
        {
            head = head.ForTrainingLabel(input.Schema[labelColumn]);
            head.CheckTrainingLabels(input, input.Schema[labelColumn]);
        }
        int outputs = head.Outputs;

        DataViewBatcher? validation = null;
        if (options.ValidationSet is { } valid)
        {
            validation = new DataViewBatcher(valid, options.FeatureColumnName, labelColumn, head.Label ?? LabelKind.Single, sequence?.Channels ?? 0, dataName: "validation set",
                columns: options.ExampleWeightColumnName is { } weight && valid.Schema.GetColumnOrNull(weight) is not null ? WeightColumn(options, valid.Schema) : null);
            if (validation.FeatureSize != train.FeatureSize)
                throw new ArgumentOutOfRangeException(nameof(options),
                    $"Column '{options.FeatureColumnName}' of the validation set has {SizeText(validation.FeatureSize)} values per row; expected {SizeText(train.FeatureSize)} as in the training data.");
            if (labelColumn != null)
                head.CheckValidationLabel(valid.Schema[labelColumn]);
        }
        objective ??= Objectives.Supervised(head);
        var kind = head.Kind;

        var device = DevicePolicy.Resolve(env.GpuDeviceId, env.FallbackToCpu, w => ch.Warning(MessageSensitivity.None, w));
        ch.Info(MessageSensitivity.None, $"Training {componentName} ({kind}) on {device.type} with seed {seed}: {inputSize} features, {outputs} output(s).");
        // One generator per run (weights, dropout), never libtorch's global one, so concurrent Fit calls stay reproducible.
        using var generator = new Generator((ulong)seed);
        var network = createNetwork(inputSize, outputs);
        if (!pretrained)
            TrainingRandom.Initialize(network, generator);
        TrainingRandom.UseGenerator(network, generator);
        network.to(device);
        if (network is ISequenceNetwork cancellable)
            cancellable.Cancellation = options.CancellationToken;
        (objective as INetworkObjective)?.Attach(network, generator);
        TrainingSummary summary;
        if (networkSwitch is { } sw && sw.AfterEpochs > 0 && sw.AfterEpochs < options.NumberOfEpochs)
        {
            // One schedule and, where shapes allow, one optimizer state across the switch: restarting either would send the
            // learning rate back to its peak on a network that starts from the trained function.
            TrainingSummary first, second;
            nn.Module<Tensor, Tensor> converted;
            ParameterOptimizer next;
            using (var previous = TrainingLoop.CreateOptimizer(network, options, ch))
            {
                first = TrainingLoop.Run(network, Forward(network), objective, head, train, validation, options, seed, device, ch,
                    new TrainingPhase(1, sw.AfterEpochs), previous);
                converted = sw.Convert(network);
                converted.to(device);
                next = TrainingLoop.CreateOptimizer(converted, options, ch);
                var carried = next.CarryStateFrom(previous, network, converted);
                ch.Info(MessageSensitivity.None,
                    $"After epoch {sw.AfterEpochs}: {sw.Description}; optimizer state carried for {carried.Count} of {converted.parameters().Count()} parameter tensors " +
                    $"(the others changed shape and start fresh), the learning-rate schedule continues; training on for {options.NumberOfEpochs - sw.AfterEpochs} epoch(s).");
            }
            network.Dispose();
            network = converted;
            TrainingRandom.UseGenerator(network, generator);
            (objective as INetworkObjective)?.Attach(network, generator);
            using (next)
            {
                second = TrainingLoop.Run(network, Forward(network), objective, head, train, validation, options, seed, device, ch,
                    new TrainingPhase(sw.AfterEpochs + 1, options.NumberOfEpochs), next);
            }
            summary = new TrainingSummary(first.Epochs.Concat(second.Epochs).ToArray(), second.BestEpoch, second.StoppedEarly, first.Seconds + second.Seconds);
        }
        else
        {
            summary = TrainingLoop.Run(network, Forward(network), objective, head, train, validation, options, seed, device, ch);
        }
        TrainingRandom.UseGenerator(network, null);

        if (network is ISequenceNetwork trained)
            trained.Cancellation = default;
        var scoringHead = head;
        if (export != null)
            (network, scoringHead) = export(network);
        var rowShape = layout?.RowShape ?? new long[] { inputSize };
        byte[] rowGraph;
        using (no_grad())
            rowGraph = OnnxScoringBridge.BuildGraph(network, options.FeatureColumnName, rowShape, scoringHead, batched: false, layout);
        var fitted = OnnxScoringBridge
            .CreateScoringEstimator(rowGraph, options.FeatureColumnName, scoringHead, device.type == DeviceType.CUDA ? device.index : null, env.FallbackToCpu, layout,
                options.NumberOfThreads)
            .Fit(input);
        var chain = new TransformerChain<ITransformer>(fitted is IEnumerable<ITransformer> parts ? parts.ToArray() : new[] { fitted });
        ch.Info(MessageSensitivity.None, $"Trained in {summary.Seconds:F1} s; exported an ONNX graph of {rowGraph.Length / 1024.0:F0} KiB.");
        var history = summary.Epochs.Select(e => new TrainingEpoch(e.Epoch, e.TrainLoss, e.ValidationLoss, e.ValidationMetric, e.Seconds)).ToArray();
        return new HazyPredictionTransformer(chain, network, scoringHead, options.FeatureColumnName, rowShape, history, seed, layout);
    }

    /// <summary>The example-weight batch column of <see cref="HazyTrainerOptions.ExampleWeightColumnName"/>, or none.</summary>
    private static BatchColumn[]? WeightColumn(HazyTrainerOptions options, DataViewSchema schema) =>
        options.ExampleWeightColumnName is { } weight
            ? new[] { new BatchColumn(TensorBatch.ExampleWeight, weight, BatchColumnKind.Scalar, NonNegative: true) }
            : null;

    /// <summary>The network's forward on a batch: with the rows' lengths for a sequence network.</summary>
    public static Func<TensorBatch, Tensor> Forward(nn.Module<Tensor, Tensor> network) =>
        network is ISequenceNetwork sequence ? b => sequence.forward(b.Features, b.Lengths) : b => network.forward(b.Features);

    /// <summary>The exported sequence shape: the fixed length, or padding for the longest row allowed.</summary>
    private static SequenceLayout Layout(DataViewBatcher train, SequenceInput sequence)
    {
        if (sequence.Channels <= 0)
            throw new ArgumentOutOfRangeException(nameof(sequence), sequence.Channels, "The channel count must be positive.");
        if (train.FeatureSize > 0)
            return new SequenceLayout(sequence.Channels, train.FeatureSize / sequence.Channels, 0);
        int steps = sequence.MaximumLength > 0 ? sequence.MaximumLength : train.LongestRow() / sequence.Channels;
        return new SequenceLayout(sequence.Channels, 0, SequencePadding.SizeFor(Math.Max(1, steps) * sequence.Channels));
    }

    private static string SizeText(int size) => size == 0 ? "a variable number of" : size.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// The output schema before training, computed by the same built-in estimators the trained model uses
    /// (with a placeholder network), so it cannot drift from the fitted transformer's.
    /// </summary>
    public static SchemaShape GetOutputSchema(SchemaShape inputSchema, HazyTrainerOptions options, PredictionKind kind, SequenceInput? sequence = null) =>
        GetOutputSchema(inputSchema, options, OutputHead.For(kind), sequence);

    /// <summary>
    /// The output schema of a model trained with <paramref name="head"/>'s label and served by <paramref name="scoringHead"/>
    /// (default: <paramref name="head"/>).
    /// </summary>
    public static SchemaShape GetOutputSchema(SchemaShape inputSchema, HazyTrainerOptions options, OutputHead head, SequenceInput? sequence = null,
        OutputHead? scoringHead = null)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        string expectedFeatures = sequence is null ? "a known-size vector of Single" : "a vector of Single";
        var features = FindShape(inputSchema, options.FeatureColumnName, expectedFeatures);
        bool variable = features.Kind == SchemaShape.Column.VectorKind.VariableVector;
        if ((features.Kind != SchemaShape.Column.VectorKind.Vector && !(variable && sequence is not null)) || features.ItemType != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(nameof(inputSchema),
                $"Column '{options.FeatureColumnName}' has type {features.Kind} of {features.ItemType}; expected {expectedFeatures}.");
        if (head.Label is not null)
        {
            var label = FindShape(inputSchema, options.LabelColumnName, head.ExpectedLabel);
            if (!head.AcceptsLabel(label))
                throw new ArgumentOutOfRangeException(nameof(inputSchema),
                    $"Column '{options.LabelColumnName}' has type {label.Kind} of {label.ItemType}; expected {head.ExpectedLabel}.");
            head = head.ForSchemaLabel(label);
        }
        if (options.ExampleWeightColumnName is { } weightName)
        {
            var weight = FindShape(inputSchema, weightName, "Single or Boolean");
            if (weight.Kind != SchemaShape.Column.VectorKind.Scalar || (weight.ItemType != NumberDataViewType.Single && weight.ItemType != BooleanDataViewType.Instance))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Column '{weightName}' has type {weight.Kind} of {weight.ItemType}; expected Single or Boolean.");
        }

        var outputs = scoringHead ?? head;
        int width = outputs.Outputs;
        if (sequence is not null)
        {
            var layout = variable ? new SequenceLayout(1, 0, SequencePadding.SizeFor(1)) : new SequenceLayout(1, 1, 0);
            using var stand_in = new PlaceholderSequenceNetwork(width);
            var sequenceGraph = OnnxScoringBridge.BuildGraph(stand_in, options.FeatureColumnName, layout.RowShape, outputs, batched: false, layout);
            return OnnxScoringBridge.CreateScoringEstimator(sequenceGraph, options.FeatureColumnName, outputs, null, true, layout)
                .GetOutputSchema(inputSchema);
        }
        using var network = nn.Linear(1, width);
        var graph = OnnxScoringBridge.BuildGraph(network, options.FeatureColumnName, new long[] { 1 }, outputs, batched: false);
        return OnnxScoringBridge.CreateScoringEstimator(graph, options.FeatureColumnName, outputs, null, true).GetOutputSchema(inputSchema);
    }

    /// <summary>Stands in for a sequence network when only the output schema is wanted: the mean of the input, widened.</summary>
    private sealed class PlaceholderSequenceNetwork : nn.Module<Tensor, Tensor>, ISequenceNetwork
    {
        private readonly int _width;

        public PlaceholderSequenceNetwork(int width) : base(nameof(PlaceholderSequenceNetwork)) => _width = width;

        public CancellationToken Cancellation { get; set; }

        public override Tensor forward(Tensor input) => forward(input, null);

        public Tensor forward(Tensor input, Tensor? lengths) => input.mean(new long[] { 1 }).expand(-1, _width);

        public string ExportOnnx(OnnxGraphBuilder graph, string input, int maxLength, string? mask) =>
            graph.Node("MatMul", new[]
            {
                graph.Node("ReduceMean", new[] { input }, OnnxAttribute.Ints("axes", 1), OnnxAttribute.Int("keepdims", 0)),
                graph.AddInitializer("widen", Enumerable.Repeat(1f, _width).ToArray(), 1, _width),
            });
    }

    private static SchemaShape.Column FindShape(SchemaShape schema, string name, string expected)
    {
        foreach (var c in schema)
        {
            if (c.Name == name)
                return c;
        }
        throw new ArgumentOutOfRangeException(nameof(schema), $"Column '{name}' not found in the input schema; expected {expected}.");
    }
}
