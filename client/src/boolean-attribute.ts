/**
 * The elements' boolean attributes: present is on, absent is off, and so is the value `false` in any case. Vue
 * writes `:auto-connect="false"` as `auto-connect="false"`, which an HTML boolean attribute would read as on.
 */
import type { ComplexAttributeConverter } from 'lit';

export const booleanAttribute: ComplexAttributeConverter<boolean> = {
  fromAttribute: (value) => value !== null && value.trim().toLowerCase() !== 'false',
  toAttribute: (value) => (value ? '' : null),
};
