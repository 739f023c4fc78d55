/**
 * The order a viewer shows the stages it knows: the stages of the AI story pipeline (the mock one the demo runs,
 * and the original system's), then any other stage in the order it first appeared.
 */
export const PIPELINE_STAGES = ['rewrite', 'storyboard', 'image_generation', 'video_generation'] as const;
