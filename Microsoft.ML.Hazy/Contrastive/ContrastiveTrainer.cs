using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Contrastive;

/// <summary>The encoder a contrastive trainer trains and exports.</summary>
public enum ContrastiveEncoder
{
    /// <summary>The Hazy MLP (ReLU hidden layers of <see cref="ContrastiveTrainer.Options.HiddenLayers"/>).</summary>
    Mlp,

    /// <summary>The Hazy CNN over C×H×W images (convolutions of <see cref="ContrastiveTrainer.Options.Filters"/>).</summary>
    Cnn,

    /// <summary>
    /// A Hazy sequence network (S4D or Transformer blocks, pooled over the valid steps) over a time-major sequence column, as
    /// <see cref="ContrastiveTrainer.Options.Sequence"/> describes it; its training augmentations make the two views.
    /// </summary>
    Sequence,
}

/// <summary>
/// Trains an encoder of a <c>Features</c> vector into an embedding with the objectives of "Perfectly Balanced" (Chen et al.,
/// ICML 2022): supervised contrastive learning (SupCon), SupCon with class-conditional InfoNCE ("spread", which keeps the
/// structure within a class), SimCLR, and the class-conditional autoencoder (cross-entropy plus reconstruction). The model
/// scores through ONNX Runtime in standard ML.NET and outputs the embedding column; fit any ML.NET trainer on it.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Input column | Type |
/// | -- | -- |
/// | `Label` | key (training only; the coarse label) |
/// | `Features` | known-size vector of Single (for the CNN and for augmentation: C·H·W values, channel after channel, row by row); for the sequence encoder a known- or variable-size vector of L·C values, time-major |
///
/// | Output column | Type |
/// | -- | -- |
/// | `Embedding` (<see cref="Options.OutputColumnName"/>) | vector of Single of <see cref="Options.EmbeddingSize"/> values, unit L2 norm when <see cref="Options.Normalize"/> |
///
/// The training loss of a batch is <see cref="Options.ContrastiveWeight"/> × the <see cref="Options.Loss"/> of two random
/// views (<see cref="Options.Augmentation"/>, when <see cref="Options.Height"/> is set; for the sequence encoder the crop, time
/// mask, scaling and jitter of <see cref="Options.Sequence"/>, drawn independently for each view; otherwise both views are the input)
/// + <see cref="Options.ClassificationWeight"/> × the cross-entropy of a linear classifier of the label over the embedding
/// (the reference's SupCon runs carry it too; with weight 0 it learns from detached embeddings and only serves validation)
/// + <see cref="Options.ReconstructionWeight"/> × the mean squared error of an MLP decoder's reconstruction of the view from
/// its embedding. The presets: <see cref="Options.SupCon"/>, <see cref="Options.Spread"/>, <see cref="Options.Autoencoder"/>,
/// <see cref="Options.CrossEntropy"/>. The classifier and decoder are dropped at export; the validation metric is the
/// classifier's accuracy.
/// ]]></format>
/// </remarks>
public sealed class ContrastiveTrainer : HazyTrainer<ContrastiveTrainer.Options>
{
    /// <summary>Options of the contrastive trainer.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>The contrastive trainer's defaults, used by these options and by the catalog's short overload.</summary>
        public static new class Defaults
        {
            /// <summary>D, the values per embedding: 64.</summary>
            public const int EmbeddingSize = 64;

            /// <summary>Widths of the MLP encoder's hidden layers: 256 (a new array on every read).</summary>
            public static int[] HiddenLayers => new[] { 256 };

            /// <summary>Widths of the decoder's hidden layers: 256 (a new array on every read).</summary>
            public static int[] DecoderHiddenLayers => new[] { 256 };

            /// <summary>Peak learning rate: 1e-3.</summary>
            public const double LearningRate = 1e-3;
        }

        /// <summary>Options with the defaults.</summary>
        public Options() => LearningRate = Defaults.LearningRate;

        /// <summary>D, the values per embedding.</summary>
        public int EmbeddingSize { get; set; } = Defaults.EmbeddingSize;

        /// <summary>Scale each embedding to unit L2 norm (in training, TorchSharp scoring and the ONNX graph alike).</summary>
        public bool Normalize { get; set; } = true;

        /// <summary>The output column.</summary>
        public string OutputColumnName { get; set; } = DefaultColumnNames.Embedding;

        /// <summary>The encoder: the Hazy MLP (default), CNN or a sequence network (<see cref="Sequence"/>).</summary>
        public ContrastiveEncoder Encoder { get; set; } = ContrastiveEncoder.Mlp;

        /// <summary>Widths of the MLP encoder's hidden layers.</summary>
        public int[] HiddenLayers { get; set; } = Defaults.HiddenLayers;

        /// <summary>Channels C of image-shaped features (CNN encoder, augmentation).</summary>
        public int Channels { get; set; } = 1;

        /// <summary>Height H of image-shaped features; 0 for features that are not images (no augmentation, MLP only).</summary>
        public int Height { get; set; }

        /// <summary>Width W of image-shaped features.</summary>
        public int Width { get; set; }

        /// <summary>The CNN encoder's filters per convolution.</summary>
        public int[] Filters { get; set; } = CnnTrainer.Options.Defaults.Filters;

        /// <summary>The CNN encoder's kernel size.</summary>
        public int KernelSize { get; set; } = CnnTrainer.Options.Defaults.KernelSize;

        /// <summary>The CNN encoder's stride.</summary>
        public int Stride { get; set; } = CnnTrainer.Options.Defaults.Stride;

        /// <summary>The CNN encoder's padding.</summary>
        public int Padding { get; set; } = CnnTrainer.Options.Defaults.Padding;

        /// <summary>
        /// The sequence encoder (when <see cref="Encoder"/> is <see cref="ContrastiveEncoder.Sequence"/>): its channels, maximum length,
        /// backbone, width, depth, normalisation, pooling and training augmentations, which make the contrastive views
        /// (<see cref="SequenceViews"/> gives a starting point). Its own training settings (epochs, batch size, learning rate,
        /// seed) are not read: these options' are. A width or depth left at 0 is sized to the data as the sequence trainer does.
        /// </summary>
        public SequenceTrainer.Options? Sequence { get; set; }

        /// <summary>The contrastive loss; null trains without one. Default: <see cref="ContrastiveLoss.Spread"/> (SupCon + cNCE, α = 0.5).</summary>
        public ContrastiveLoss? Loss { get; set; } = ContrastiveLoss.Spread();

        /// <summary>The weight of the contrastive loss: 1.</summary>
        public double ContrastiveWeight { get; set; } = 1.0;

        /// <summary>The weight of the classifier's cross-entropy: 1, as the reference's task weights.</summary>
        public double ClassificationWeight { get; set; } = 1.0;

        /// <summary>The weight of the reconstruction's mean squared error; 0 (no decoder). The class-conditional autoencoder uses 1.</summary>
        public double ReconstructionWeight { get; set; }

        /// <summary>Widths of the decoder's hidden layers (when <see cref="ReconstructionWeight"/> is positive).</summary>
        public int[] DecoderHiddenLayers { get; set; } = Defaults.DecoderHiddenLayers;

        /// <summary>The views of image-shaped features; null makes both views the input itself.</summary>
        public ImageAugmentation? Augmentation { get; set; } = new();

        /// <summary>SupCon (with the classifier's cross-entropy, as the reference's pipeline).</summary>
        public static Options SupCon() => new() { Loss = ContrastiveLoss.SupCon() };

        /// <summary>SupCon + class-conditional InfoNCE with weight <paramref name="alpha"/> (L_spread).</summary>
        /// <param name="alpha">The weight of cNCE in the mix.</param>
        public static Options Spread(double alpha = 0.5) => new() { Loss = ContrastiveLoss.Spread(alpha) };

        /// <summary>The class-conditional autoencoder: cross-entropy on the label plus reconstruction, weights 1 and 1.</summary>
        public static Options Autoencoder() => new() { Loss = null, ReconstructionWeight = 1.0 };

        /// <summary>Cross-entropy alone (the supervised baseline, trained with the same encoder and views).</summary>
        public static Options CrossEntropy() => new() { Loss = null };

        /// <summary>
        /// A sequence encoder for contrastive training: a bidirectional 2 × 64 S4D backbone with mean pooling, per-series
        /// z-normalisation for one channel (as the UCR preset), and the views' augmentations: a random crop of 80 % of the
        /// valid steps, a time mask of 10 %, per-channel scaling σ 0.1 and jitter σ 0.05. Set it as <see cref="Sequence"/>
        /// with <see cref="Encoder"/> = <see cref="ContrastiveEncoder.Sequence"/>.
        /// </summary>
        /// <param name="channels">Values per time step.</param>
        /// <param name="maximumLength">For a variable-size column, the most time steps a row may have when scoring; 0 takes the longest training row.</param>
        /// <param name="backbone">The blocks' layer type.</param>
        public static SequenceTrainer.Options SequenceViews(int channels = 1, int maximumLength = 0, SequenceBackbone backbone = SequenceBackbone.S4D) => new()
        {
            Channels = channels,
            MaximumLength = maximumLength,
            Backbone = backbone,
            ModelDimension = 64,
            NumberOfLayers = 2,
            Bidirectional = true,
            NormalizeSeries = channels == 1,
            RandomCropFraction = 0.8,
            TimeMaskFraction = 0.1,
            ScalingStandardDeviation = 0.1,
            JitterStandardDeviation = 0.05,
        };

        internal override void Check()
        {
            base.Check();
            Require(EmbeddingSize > 0, nameof(EmbeddingSize), EmbeddingSize, "must be positive");
            Require(!string.IsNullOrWhiteSpace(OutputColumnName), nameof(OutputColumnName), OutputColumnName, "must name a column");
            Require(Enum.IsDefined(Encoder), nameof(Encoder), Encoder, "is not a ContrastiveEncoder");
            Require(HiddenLayers is not null && HiddenLayers.All(w => w > 0), nameof(HiddenLayers), HiddenLayers is null ? null : $"[{string.Join(", ", HiddenLayers)}]",
                "must list positive widths (it may be empty)");
            Require(DecoderHiddenLayers is not null && DecoderHiddenLayers.All(w => w > 0), nameof(DecoderHiddenLayers), null, "must list positive widths (it may be empty)");
            Require(Channels > 0, nameof(Channels), Channels, "must be positive");
            Require(Height >= 0 && Width >= 0 && (Height == 0) == (Width == 0), nameof(Height), $"{Height}×{Width}", "must both be positive for images, or both 0");
            Require(Encoder != ContrastiveEncoder.Cnn || Height > 0, nameof(Height), Height, "must be set for the CNN encoder");
            Require(Encoder != ContrastiveEncoder.Sequence || Sequence is not null, nameof(Sequence), null, "must describe the sequence encoder (see SequenceViews)");
            Require(Encoder != ContrastiveEncoder.Sequence || Height == 0, nameof(Height), Height, "must be 0 for the sequence encoder (its views come from Sequence's augmentations)");
            Require(Encoder != ContrastiveEncoder.Sequence || ReconstructionWeight == 0, nameof(ReconstructionWeight), ReconstructionWeight,
                "must be 0 for the sequence encoder (the decoder reconstructs fixed-size vectors; rows of a sequence column may differ in length)");
            if (Encoder == ContrastiveEncoder.Sequence)
                Sequence!.Check();
            Require(Filters is not null && Filters.Length > 0 && Filters.All(f => f > 0), nameof(Filters), null, "must list positive filter counts");
            Require(ContrastiveWeight >= 0 && double.IsFinite(ContrastiveWeight), nameof(ContrastiveWeight), ContrastiveWeight, "must be non-negative");
            Require(ClassificationWeight >= 0 && double.IsFinite(ClassificationWeight), nameof(ClassificationWeight), ClassificationWeight, "must be non-negative");
            Require(ReconstructionWeight >= 0 && double.IsFinite(ReconstructionWeight), nameof(ReconstructionWeight), ReconstructionWeight, "must be non-negative");
            Loss?.Check();
            Augmentation?.Check();
            if (Encoder == ContrastiveEncoder.Cnn)
            {
                var (h, w) = CnnNetwork.OutputSide(Height, Width, Filters!.Length, KernelSize, Stride, Padding);
                Require(h > 0 && w > 0, nameof(Filters), Filters.Length, $"is too many convolutions for a {Height}×{Width} image");
            }
        }
    }

    internal ContrastiveTrainer(HazyEnvironment env, Options options)
        : base(env, "Hazy.Contrastive", options, PredictionKind.Embedding)
    {
    }

    /// <summary>Validated as a classifier of the key label; the classifier is dropped at export.</summary>
    private protected override OutputHead TrainingHead => OutputHead.For(PredictionKind.MulticlassClassification);

    private protected override OutputHead ScoringHead => Head(TrainerOptions);

    private static EmbeddingHead Head(Options options) => new(options.EmbeddingSize, options.Normalize, options.OutputColumnName);

    private protected override SequenceInput? SchemaSequence =>
        TrainerOptions is { Encoder: ContrastiveEncoder.Sequence, Sequence: { } s } ? new(s.Channels, s.MaximumLength) : null;

    private protected override TrainingPlan PlanTraining(IDataView input, Options options)
    {
        var head = Head(options);
        if (options.Height > 0)
        {
            int expected = options.Channels * options.Height * options.Width;
            var column = input.Schema.GetColumnOrNull(options.FeatureColumnName);
            if (column is { Type: Microsoft.ML.Data.VectorDataViewType vector } && vector.Size != expected)
                throw new ArgumentOutOfRangeException(nameof(input),
                    $"Column '{options.FeatureColumnName}' has {vector.Size} values per row; expected Channels·Height·Width = {options.Channels}·{options.Height}·{options.Width} = {expected}.");
        }
        ContrastiveNetwork? network = null;
        var decoder = options.ReconstructionWeight > 0 ? options.DecoderHiddenLayers.ToArray() : null;
        Func<int, Func<TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>>> encoder = features => ContrastiveNetwork.EncoderFactory(options, features, head.Size);
        SequenceInput? sequence = null;
        var trainOptions = (HazyTrainerOptions)options;
        if (options.Encoder == ContrastiveEncoder.Sequence)
        {
            // The sequence trainer's sizing fills a width or depth left at 0; these options' batch size and epochs stand.
            var s = options.Sequence!.Copy();
            s.FeatureColumnName = options.FeatureColumnName;
            s.BatchSize = options.BatchSize;
            s.NumberOfEpochs = options.NumberOfEpochs;
            using (var channel = Environment.Env.Register("Hazy.Contrastive.Sequence").Start("Sizing"))
                s = SequenceSizing.Resolve(s, input, channel);
            var backbone = SequenceBackbones.Create(s);
            var (shape, treatment) = s.NetworkShape();
            encoder = channels => () => new SequenceNetwork(channels, head.Size, s.NumberOfLayers, shape, s.Normalization, s.PreNorm, backbone, treatment);
            sequence = new SequenceInput(s.Channels, s.MaximumLength,
                (rows, steps) => 2 * SequenceNetwork.TrainingBytes(backbone, shape, s.NumberOfLayers, s.Channels, rows, steps));
        }
        return new TrainingPlan("Hazy.Contrastive", trainOptions,
            (features, classes) => network = new ContrastiveNetwork(encoder(features), head, classes, features, decoder),
            Sequence: sequence,
            Objective: new ContrastiveObjective(() => network ?? throw new InvalidOperationException("The network was not built."), options),
            Export: trained =>
            {
                var encoder = ((ContrastiveNetwork)trained).CopyEncoder();
                trained.Dispose();
                return (encoder, head);
            });
    }
}
