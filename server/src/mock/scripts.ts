/** What the simulated AI story pipeline "generates": mixed Chinese and English, like the original product. */

export const REWRITE_TEXT =
  '从前，在一座被云雾环绕的山城里，住着一位名叫 Lin 的年轻画师。She painted lanterns for the night market, ' +
  '每一盏灯笼上都画着一个未完成的故事。One evening a stranger asked her to finish them all before the first snow. ' +
  '她犹豫了片刻，然后点了点头。The city held its breath, and the lanterns began to glow. 故事由此开始。';

export const STORYBOARD_TEXT =
  'Scene 1 — 山城夜市，远景。Lanterns sway in the wind; Lin sits at her stall, brush in hand. ' +
  'Scene 2 — 特写：陌生人的手递上一卷旧画纸。Camera pushes in slowly. ' +
  'Scene 3 — 蒙太奇：Lin paints through the night, 灯笼一盏接一盏亮起。 ' +
  'Scene 4 — 初雪落下，整座城被灯光照亮。Wide shot, music swells, fade to white.';

export const IMAGE_ITEMS = ['scene_1_night_market.png', 'scene_2_stranger.png', 'scene_3_montage_a.png', 'scene_3_montage_b.png', 'scene_4_first_snow.png', 'cover.png'];

export const VIDEO_ITEMS = ['clip_scene_1.mp4', 'clip_scene_2.mp4', 'clip_scene_3.mp4', 'clip_scene_4.mp4'];

/**
 * Splits text the way an LLM streams it: an English word with its trailing space, or one or two CJK
 * characters, or a run of punctuation. Joining the pieces gives the text back exactly.
 */
export function toTokens(text: string): string[] {
  const pieces = text.match(/[A-Za-z0-9'’]+[\s]*|[\u3400-\u9fff]{1,2}|[^A-Za-z0-9'’\u3400-\u9fff]+?\s*/gu) ?? [];
  return pieces;
}
